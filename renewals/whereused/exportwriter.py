"""Write SAP Cloud Integration flow exports in memory: the demo's flows (renewals.demo), and the
flow factory of the tests and the benchmark (tests/renewals/flowfactory.py) builds on it.

The output mirrors what Cloud Integration exports: a ZIP with `META-INF/MANIFEST.MF`,
`src/main/resources/scenarioflows/integrationflow/<name>.iflw` (BPMN 2.0 with the real `bpmn2`
and `ifl` namespaces, including a diagram section like real exports carry),
`src/main/resources/parameters.prop` and `src/main/resources/script/*`.

Typical use::

    xml = iflw(
        channel("MessageFlow_1", "To ERP", "SOAP", props={"authentication": "Client Certificate",
                                                           "privateKeyAlias": "sap_key"}),
        step("CallActivity_1", "Sign", "PKCS7Signer", {"privateKeyAlias": "signing_key"}),
    )
    data = flow_zip("com.example.flow", xml, parameters={"alias": "x"})

Pure standard library (no Django), and plain string building, so a benchmark can write
thousands of flows quickly.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

BPMN2_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
IFL_NS = "http:///com.sap.ifl.model/Ifl.xsd"

FLOW_DIR = "src/main/resources/scenarioflows/integrationflow/"
PARAMETERS_PATH = "src/main/resources/parameters.prop"
SCRIPT_DIR = "src/main/resources/script/"

# adapter -> (ComponentType, cname, transport protocol, message protocol, address property key)
ADAPTERS: dict[str, tuple[str, str, str, str, str]] = {
    "SOAP": ("SOAP", "sap:SOAP", "HTTP", "SOAP 1.x", "address"),
    "Plain SOAP": ("SOAP", "sap:SOAP", "HTTP", "Plain SOAP", "address"),
    "HTTP": ("HTTP", "sap:HTTP", "HTTP", "None", "httpAddressWithoutQuery"),
    "HTTPS": ("HTTPS", "sap:HTTPS", "HTTPS", "None", "urlPath"),
    "IDoc": ("IDOC", "sap:IDOC", "HTTP", "IDoc SOAP", "address"),
    "OData": ("HCIOData", "sap:HCIOData", "HTTP", "OData V2", "address"),
    "SuccessFactors": ("SuccessFactors", "sap:SuccessFactors", "HTTPS", "OData V2", "address"),
    "AS2": ("AS2", "sap:AS2", "HTTP", "AS2", "address"),
    "XI": ("XI", "sap:XI", "HTTP", "XI 3.0", "address"),
    "Mail": ("Mail", "sap:Mail", "SMTP", "MIME", "address"),
    "SFTP": ("SFTP", "sap:SFTP", "SFTP", "File", "host"),
    "ProcessDirect": (
        "ProcessDirect",
        "ProcessDirect",
        "Not Applicable",
        "Not Applicable",
        "address",
    ),
}


@dataclass(frozen=True)
class Channel:
    """An adapter channel (`bpmn2:messageFlow`) between a backend participant and the process."""

    id: str
    name: str
    direction: str
    participant: str
    properties: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Step:
    """A flow step (`bpmn2:callActivity` or `bpmn2:serviceTask`) inside the integration process."""

    id: str
    name: str
    properties: tuple[tuple[str, str], ...]
    tag: str = "callActivity"
    inner: tuple[Step, ...] = ()  # steps inside a subProcess (e.g. an exception subprocess)


@dataclass
class _Participant:
    id: str
    name: str
    type: str
    extra: list[str] = field(default_factory=list)


def _esc(text: str) -> str:
    """XML-escape text and attribute values (saxutils is the benchmark's bottleneck otherwise)."""
    if "&" in text or "<" in text or ">" in text or '"' in text:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return text.replace('"', "&quot;")
    return text


def _attr(value: str) -> str:
    return f'"{_esc(value)}"'


def _merge(base: list[tuple[str, str]], props: Mapping[str, str] | None) -> tuple:
    """Base properties first (as exports order them), caller's values override or extend."""
    merged = dict(base)
    if props:
        merged.update({k: "" if v is None else str(v) for k, v in props.items()})
    return tuple(merged.items())


def channel(
    id: str,
    name: str,
    adapter: str = "SOAP",
    direction: str = "Receiver",
    props: Mapping[str, str] | None = None,
    receiver: str = "ERP_PROD",
    address: str | None = "https://erp.example:443/sap/bc/srt",
    *,
    version: str = "1.11.0",
) -> Channel:
    """An adapter channel. `receiver` names the backend participant at the other end: the
    receiving system for a Receiver channel, the sending system for a Sender channel.

    `props` overrides or extends the generated properties (ComponentType, cmdVariantUri, direction,
    address, system, ...); pass `address=None` to leave the address property out.
    """
    ctype, cname, tp, mp, address_key = ADAPTERS.get(
        adapter, (adapter, adapter, "HTTP", "None", "address")
    )
    base = [
        ("ComponentType", ctype),
        ("ComponentNS", "sap"),
        ("Name", adapter),
        ("Description", ""),
        ("TransportProtocol", tp),
        ("MessageProtocol", mp),
        ("direction", direction),
        ("system", receiver),
        ("componentVersion", version.rsplit(".", 1)[0]),
        (
            "cmdVariantUri",
            f"ctype::AdapterVariant/cname::{cname}/tp::{tp}/mp::{mp}"
            f"/direction::{direction}/version::{version}",
        ),
    ]
    if address is not None:
        base.append((address_key, address))
    return Channel(id, name, direction, receiver, _merge(base, props))


def step(
    id: str,
    name: str,
    cname: str,
    props: Mapping[str, str] | None = None,
    *,
    activity_type: str | None = None,
    tag: str = "callActivity",
    version: str = "1.3.0",
    inner: Iterable[Step] = (),
) -> Step:
    """A flow step; `cname` goes into `cmdVariantUri` (e.g. "PKCS7Signer", "SignMessage").

    For `tag="subProcess"`, `inner` steps are written inside it.
    """
    base = [
        ("componentVersion", version.rsplit(".", 1)[0]),
        ("activityType", activity_type or cname),
        ("cmdVariantUri", f"ctype::FlowstepVariant/cname::{cname}/version::{version}"),
    ]
    return Step(id, name, _merge(base, props), tag, tuple(inner))


def _props_xml(properties: Iterable[tuple[str, str]], indent: str) -> str:
    return "".join(
        f"{indent}<ifl:property>\n{indent}    <key>{_esc(k)}</key>\n"
        f"{indent}    <value>{_esc(v)}</value>\n{indent}</ifl:property>\n"
        for k, v in properties
    )


def _inner_step_xml(s: Step) -> str:
    return (
        f"            <bpmn2:{s.tag} id={_attr(s.id)} name={_attr(s.name)}>\n"
        "                <bpmn2:extensionElements>\n"
        + _props_xml(s.properties, " " * 20)
        + "                </bpmn2:extensionElements>\n"
        + "".join(_inner_step_xml(inner) for inner in s.inner)
        + f"            </bpmn2:{s.tag}>\n"
    )


def _participant_id(name: str) -> str:
    return "Participant_" + re.sub(r"\W", "_", name)


def iflw(
    *components: Channel | Step,
    participants: Iterable[tuple[str, str, str]] = (),
    process_name: str = "Integration Process",
    diagram: bool = True,
) -> bytes:
    """A complete `.iflw` document: collaboration (participants + channels), one integration
    process with the steps in a row, and (optionally) the diagram section real exports carry.

    Receiver channels run from the process end event to their participant, sender channels from
    their participant to the start event. Extra participants are (id, name, ifl:type) triples.
    """
    channels = [c for c in components if isinstance(c, Channel)]
    steps = [c for c in components if isinstance(c, Step)]

    parts: dict[str, _Participant] = {}
    for pid, pname, ptype in participants:
        parts[pid] = _Participant(pid, pname, ptype)
    for ch in channels:
        pid = _participant_id(ch.participant)
        if pid not in parts:
            ptype = "EndpointSender" if ch.direction == "Sender" else "EndpointRecevier"
            parts[pid] = _Participant(pid, ch.participant, ptype)

    out: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n',
        f'<bpmn2:definitions xmlns:bpmn2="{BPMN2_NS}"'
        ' xmlns:bpmndi="http://www.omg.org/spec/BPMN/20100524/DI"'
        ' xmlns:dc="http://www.omg.org/spec/DD/20100524/DC"'
        ' xmlns:di="http://www.omg.org/spec/DD/20100524/DI"'
        f' xmlns:ifl="{IFL_NS}"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="Definitions_1">\n',
        '    <bpmn2:collaboration id="Collaboration_1" name="Default Collaboration">\n',
        "        <bpmn2:extensionElements>\n",
        _props_xml(
            [
                ("namespaceMapping", ""),
                ("httpSessionHandling", "None"),
                ("returnExceptionToSender", "false"),
                ("log", "All events"),
                ("componentVersion", "1.2"),
                ("cmdVariantUri", "ctype::IFlowVariant/cname::IFlowConfiguration/version::1.2.4"),
            ],
            " " * 12,
        ),
        "        </bpmn2:extensionElements>\n",
    ]
    for p in parts.values():
        out.append(
            f"        <bpmn2:participant id={_attr(p.id)} ifl:type={_attr(p.type)}"
            f" name={_attr(p.name)}>\n"
            "            <bpmn2:extensionElements>\n"
            + _props_xml([("ifl:type", p.type)], " " * 16)
            + "            </bpmn2:extensionElements>\n        </bpmn2:participant>\n"
        )
    out.append(
        '        <bpmn2:participant id="Participant_Process_1" ifl:type="IntegrationProcess"'
        f' name={_attr(process_name)} processRef="Process_1">\n'
        "            <bpmn2:extensionElements/>\n        </bpmn2:participant>\n"
    )
    for ch in channels:
        pid = _participant_id(ch.participant)
        if ch.direction == "Sender":
            src, tgt = pid, "StartEvent_2"
        else:
            src, tgt = "EndEvent_2", pid
        out.append(
            f"        <bpmn2:messageFlow id={_attr(ch.id)} name={_attr(ch.name)}"
            f" sourceRef={_attr(src)} targetRef={_attr(tgt)}>\n"
            "            <bpmn2:extensionElements>\n"
            + _props_xml(ch.properties, " " * 16)
            + "            </bpmn2:extensionElements>\n        </bpmn2:messageFlow>\n"
        )
    out.append("    </bpmn2:collaboration>\n")

    chain = ["StartEvent_2", *(s.id for s in steps), "EndEvent_2"]
    out.append(f'    <bpmn2:process id="Process_1" name={_attr(process_name)}>\n')
    out.append(
        "        <bpmn2:extensionElements>\n"
        + _props_xml(
            [("transactionHandling", "Not Required"), ("componentVersion", "1.1")], " " * 12
        )
        + "        </bpmn2:extensionElements>\n"
    )
    out.append(
        '        <bpmn2:startEvent id="StartEvent_2" name="Start">\n'
        "            <bpmn2:outgoing>SequenceFlow_0</bpmn2:outgoing>\n"
        "            <bpmn2:messageEventDefinition/>\n        </bpmn2:startEvent>\n"
    )
    for i, s in enumerate(steps):
        out.append(
            f"        <bpmn2:{s.tag} id={_attr(s.id)} name={_attr(s.name)}>\n"
            "            <bpmn2:extensionElements>\n"
            + _props_xml(s.properties, " " * 16)
            + "            </bpmn2:extensionElements>\n"
            + "".join(_inner_step_xml(inner) for inner in s.inner)
            + f"            <bpmn2:incoming>SequenceFlow_{i}</bpmn2:incoming>\n"
            f"            <bpmn2:outgoing>SequenceFlow_{i + 1}</bpmn2:outgoing>\n"
            f"        </bpmn2:{s.tag}>\n"
        )
    out.append(
        '        <bpmn2:endEvent id="EndEvent_2" name="End">\n'
        f"            <bpmn2:incoming>SequenceFlow_{len(steps)}</bpmn2:incoming>\n"
        "            <bpmn2:messageEventDefinition/>\n        </bpmn2:endEvent>\n"
    )
    for i in range(len(chain) - 1):
        out.append(
            f'        <bpmn2:sequenceFlow id="SequenceFlow_{i}" sourceRef={_attr(chain[i])}'
            f" targetRef={_attr(chain[i + 1])}/>\n"
        )
    out.append("    </bpmn2:process>\n")

    if diagram:
        out.append(
            '    <bpmndi:BPMNDiagram id="BPMNDiagram_1" name="Default Collaboration Diagram">\n'
            '        <bpmndi:BPMNPlane bpmnElement="Collaboration_1" id="BPMNPlane_1">\n'
        )
        shapes = [*parts, "Participant_Process_1", *chain]
        for n, element in enumerate(shapes):
            out.append(
                f"            <bpmndi:BPMNShape bpmnElement={_attr(element)}"
                f" id={_attr('BPMNShape_' + element)}>\n"
                f'                <dc:Bounds height="60.0" width="100.0" x="{100 + 120 * n}.0"'
                ' y="140.0"/>\n            </bpmndi:BPMNShape>\n'
            )
        edges = [c.id for c in channels] + [f"SequenceFlow_{i}" for i in range(len(chain) - 1)]
        for n, element in enumerate(edges):
            out.append(
                f"            <bpmndi:BPMNEdge bpmnElement={_attr(element)}"
                f" id={_attr('BPMNEdge_' + element)}>\n"
                f'                <di:waypoint x="{150 + 120 * n}.0" xsi:type="dc:Point"'
                ' y="170.0"/>\n'
                f'                <di:waypoint x="{270 + 120 * n}.0" xsi:type="dc:Point"'
                ' y="170.0"/>\n'
                "            </bpmndi:BPMNEdge>\n"
            )
        out.append("        </bpmndi:BPMNPlane>\n    </bpmndi:BPMNDiagram>\n")
    out.append("</bpmn2:definitions>\n")
    return "".join(out).encode("utf-8")


def _escape_property(text: str, *, is_key: bool) -> str:
    """Java .properties escaping (what Properties.store writes), ASCII-only output."""
    out = []
    for i, ch in enumerate(text):
        if ch == "\\":
            out.append("\\\\")
        elif ch in "=:#!" or (ch == " " and (is_key or i == 0)):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def parameters_prop(parameters: Mapping[str, str]) -> bytes:
    """A `parameters.prop` as Cloud Integration writes it (a comment line, escaped pairs)."""
    lines = ["#Store parameters", "#Mon Jan 01 00:00:00 UTC 2024"]
    lines += [
        f"{_escape_property(k, is_key=True)}={_escape_property(v, is_key=False)}"
        for k, v in parameters.items()
    ]
    return ("\n".join(lines) + "\n").encode("ascii")


def manifest(
    bundle_id: str | None, bundle_name: str | None = None, version: str = "1.0.0"
) -> bytes:
    """META-INF/MANIFEST.MF; `bundle_id=None` leaves out Bundle-SymbolicName."""
    lines = ["Manifest-Version: 1.0", "Bundle-ManifestVersion: 2"]
    if bundle_id is not None:
        lines.append(f"Bundle-SymbolicName: {bundle_id}; singleton:=true")
    lines.append(f"Bundle-Name: {bundle_name or bundle_id or ''}")
    if version:
        lines.append(f"Bundle-Version: {version}")
    lines += ["SAP-BundleType: IntegrationFlow", "SAP-NodeType: IFLMAP", "Origin-Bundle-Name: x"]
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def zip_bytes(
    members: Mapping[str, bytes], compression: int = zipfile.ZIP_DEFLATED, level: int = 1
) -> bytes:
    """A ZIP with the given members, in memory (level 1: fast, still compresses XML well)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression, compresslevel=level) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def flow_zip(
    bundle_id: str,
    iflw_bytes: bytes,
    parameters: Mapping[str, str] | None = None,
    scripts: Mapping[str, bytes | str] | None = None,
    bundle_name: str | None = None,
    *,
    version: str = "1.0.0",
    flow_name: str | None = None,
    extra_members: Mapping[str, bytes] | None = None,
) -> bytes:
    """A flow export ZIP. `scripts` maps file names ("Sign.groovy") to their source."""
    members: dict[str, bytes] = {
        "META-INF/MANIFEST.MF": manifest(bundle_id, bundle_name, version),
        ".project": b"<?xml version='1.0' encoding='UTF-8'?><projectDescription/>",
        FLOW_DIR + f"{flow_name or bundle_id}.iflw": iflw_bytes,
    }
    if parameters is not None:
        members[PARAMETERS_PATH] = parameters_prop(parameters)
    for name, source in (scripts or {}).items():
        members[SCRIPT_DIR + name] = source.encode("utf-8") if isinstance(source, str) else source
    if extra_members:
        members.update(extra_members)
    return zip_bytes(members)
