"""Read SAP Cloud Integration flow exports and list every way they use a keystore key.

Pure Python (no Django) so it can be tested and benchmarked alone. The entry point is
`parse_flow_zip`: it takes an exported integration flow ZIP and returns a `FlowExport` naming the
bundle and every `KeyUsage` found in its `.iflw` files and scripts. Everything in the file is
untrusted: the ZIP is size-, entry- and expansion-capped before and while it is read (members are
read into memory one at a time, never extracted to disk), and XML with a DTD is refused before
any entity could be expanded.

How a component uses a key (the where-used rules, see shared/DOMAIN.md):

* Every adapter channel (`bpmn2:messageFlow`) and step (`bpmn2:callActivity`, `serviceTask`, ...)
  is read once into a `{key: value}` dict of its `ifl:property` pairs; `{{param}}` references are
  resolved from `parameters.prop`. All rules below are dict look-ups on that one dict. A
  parameter the file does not set (Cloud Integration allows that) stays as written and is listed
  in `FlowExport.unresolved_parameters`: it changes nothing, except in an alias ("may use" any
  key) or an authentication property ("may use" the alias the channel names), each with the
  parameter named in `KeyUsage.reason`.
* Alias properties are the keys containing "alias" (not `proxyAlias`), plus the alias columns
  of table-valued properties (`<row><cell id='PrivateKeyAlias'>k</cell>...</row>`, as in signer
  parameters or the Mail adapter's S/MIME key lists). Their name says the operation when it
  mentions one: `...Sign...` with a private key -> signing, with a public key -> signature
  verification; `...Encrypt...` with a public key -> encryption, with a private key -> decryption
  (e.g. `PrivateKeyAliasResponseEncryption`); `...MDN...Verification` -> verification.
* Such operation aliases count only while the operation is switched on. SOAP WS-Security must
  be on for the channel's direction (`WSSecurity_outbound` for receivers, `_inbound` for senders;
  "None" turns off every stale WS-Security property) and its type must name the operation
  ("SignMessage" enables signing/verification, "...Encrypt..." encryption/decryption; a type
  naming neither, e.g. policy based, enables all). Elsewhere on/off flags are found by name (a
  non-alias key containing "sign", "encrypt", "decrypt", "verif" or, for MDNs, "mdn"/"receipt"):
  if clear flags exist and none is on (true/1/yes/on/a value starting with the operation), the
  alias is ignored.
* Plain aliases (`privateKeyAlias`, `odataCertAuthPrivateKeyAlias`, `alias`, ...) on a channel are
  client-certificate aliases: used when an authentication key (`authentication`,
  `authenticationMethod`, ...) says "Client Certificate" (or SFTP "PublicKey"/"Dual"), and CPI
  opens the connection (receiver channels; polling senders like SFTP, Mail, OData). No alias
  configured -> "may use" any key (except SFTP, which only counts with a named SSH key). Another
  authentication value (Basic, OAuth, None) switches the alias off.
* Steps: signers (PKCS#7, XML, simple) use their alias for signing, and "may use" any key pair
  without one; PKCS#7/XML encryptors use public aliases for encryption and a private alias for
  optional signing; verifiers (XML, PKCS#7, simple) use public aliases for verification;
  decryptors "may use" any key (decryption tries every key) plus any public alias for verifying
  the signer.
* An alias value that is a runtime expression (`${header.x}`) cannot be known: it becomes
  "may use" any key, with a warning.
* Alias properties no rule handled (unknown components, sender channels with client-certificate
  authorization, ...) are kept as "unclassified", never dropped.
* Channels name their backend by participant (`system`) and address: `address`, AS2's
  `receipientURL`, AS4's `endpointUrl`, SFTP's `host` plus `port`, ... (see `_channel_address`).
* Scripts: what reaches a keystore API, see `find_script_aliases`; the usage names the step whose
  `script` property runs the file, the file is `KeyUsage.script_file`.

`KeyUsage.outbound` marks client-certificate usages on connections CPI opens: the TLS socket keeps
the key for up to 24 hours, so those flows must be restarted after activation. Signing, encryption
and decryption pick up a new key at once.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import chain
from typing import BinaryIO, NamedTuple, cast
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

MAX_ZIP_BYTES = 20 * 1024 * 1024  # compressed file size cap, checked before opening
MAX_ZIP_ENTRIES = 2000
MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024  # declared and actually read, whole archive
MAX_MEMBER_BYTES = 10 * 1024 * 1024
# Element nesting in one .iflw, the root being level 1. Real flows nest about ten levels (a
# subProcess in a subProcess adds two); expat and ElementTree build deeper trees without
# recursing, but a deep tree costs about twice the memory of a flat one of the same size.
MAX_XML_DEPTH = 200
# Documents above this size are depth-checked while expat reads them, so a deep one is refused
# within 16 KB of crossing the limit. Smaller ones (real flows: tens to a few hundred KB) are
# parsed in one call and checked after: event reporting would slow every parse by a fifth.
_STREAM_XML_BYTES = 256 * 1024

MANIFEST_PATH = "meta-inf/manifest.mf"
FLOW_DIR = "src/main/resources/scenarioflows/integrationflow/"
PARAMETERS_PATH = "src/main/resources/parameters.prop"
SCRIPT_DIR = "src/main/resources/script/"
SCRIPT_SUFFIXES = (".groovy", ".gsh", ".js")


class FlowParseError(ValueError):
    """A flow export (or one of its files) cannot be read; the message is one operator line."""


class Usage(StrEnum):
    """How a component uses a key."""

    CLIENT_CERTIFICATE = "client-certificate authentication"
    SIGNING = "signing"
    ENCRYPTION = "encryption"
    DECRYPTION = "decryption"
    VERIFICATION = "signature verification"
    NAMED_IN_SCRIPT = "named in script"
    UNCLASSIFIED = "unclassified"


class Certainty(StrEnum):
    USES = "uses"  # the alias is configured explicitly
    MAY_USE = "may use"  # no alias configured (any fitting key), a decryptor, a runtime expression


ANY_KEY = ""  # alias value meaning "any key"

# Reasons of the usual "may use" rows (KeyUsage.reason).
NO_ALIAS = "client certificate without an alias"
SIGNER_WITHOUT_ALIAS = "signer without an alias"
TRIES_EVERY_KEY = "decryption tries every key"


@dataclass(frozen=True, slots=True)
class KeyUsage:
    component_id: str  # bpmn id (for scripts: the path inside the ZIP)
    component_name: str
    component_type: str  # "SOAP", "HTTP", "IDoc", "PKCS#7 signer", "Script", "Unknown", ...
    direction: str  # "Receiver" / "Sender" / "" for steps
    usage: Usage
    certainty: Certainty
    alias: str  # parameters resolved, or ANY_KEY
    property_key: str  # the ifl:property that carried it ("" if none; scripts: the API call)
    system: str  # backend participant name ("" if none)
    address: str  # endpoint address/URL/host ("" if none)
    outbound: bool  # client-certificate usage on a connection CPI opens -> restart after activation
    # Why a "may use" row may use the key ("signer without an alias", the unset parameter, ...).
    reason: str = ""
    script_file: str = ""  # scripts: the file inside the ZIP (the component is its step)


@dataclass(frozen=True)
class FlowExport:
    bundle_id: str  # Bundle-SymbolicName
    bundle_name: str  # Bundle-Name, falling back to bundle_id
    version: str  # Bundle-Version or ""
    flow_names: list[str]  # .iflw file names without the suffix
    usages: list[KeyUsage]
    warnings: list[str] = field(default_factory=list)
    # `{{name}}` references parameters.prop does not set, in order of first use: Cloud
    # Integration allows them (the parameter is configured in the tenant or left empty).
    unresolved_parameters: list[str] = field(default_factory=list)


class ScriptAlias(NamedTuple):
    alias: str  # what reaches the keystore API, as written; ANY_KEY for a runtime value
    call: str  # the keystore API method it is passed to


class ScriptStep(NamedTuple):
    """A step that runs a script file (its `script` property names the file)."""

    script: str  # the property's value: a file name, or a path below the script folder
    component_id: str
    component_name: str


# ---------------------------------------------------------------------------------------------
# ZIP


def parse_flow_zip(
    source: bytes | bytearray | memoryview | BinaryIO | str | os.PathLike[str],
    *,
    known_aliases: Iterable[str] | None = None,
) -> FlowExport:
    """Parse one integration flow export.

    Raises FlowParseError with a one-line message for anything unusable. `known_aliases` is
    ignored: scripts are matched against the tenant's aliases when where-used is asked, not when
    the file is read (see `find_script_aliases`); it is still accepted for older callers.
    """
    del known_aliases
    with _open_source(source) as fp:
        declared = _declared_entry_count(fp)
        if declared is not None and declared > MAX_ZIP_ENTRIES:
            raise FlowParseError(_too_many_entries(declared))
        try:
            archive = zipfile.ZipFile(fp)
        except zipfile.BadZipFile:
            raise FlowParseError("not a ZIP file")
        except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
            raise FlowParseError(f"not a readable ZIP file ({_one_line(exc)})")
        with archive:
            try:
                return _parse_archive(archive)
            except FlowParseError:
                raise
            except (IndexError, LookupError, ValueError, EOFError, OSError) as exc:
                # Damaged archives reach corners of zipfile and codecs (a member named "",
                # an unknown XML encoding): one clean message per file, never a traceback.
                raise FlowParseError(f"damaged flow export ({_one_line(exc)})")


@contextlib.contextmanager
def _open_source(
    source: bytes | bytearray | memoryview | BinaryIO | str | os.PathLike[str],
) -> Iterator[BinaryIO]:
    """A seekable binary file for `source`, refusing anything over MAX_ZIP_BYTES unopened."""
    if isinstance(source, bytes | bytearray | memoryview):
        _check_zip_size(len(source))
        yield io.BytesIO(source)
    elif isinstance(source, str | os.PathLike):
        try:
            size = os.stat(source).st_size
        except OSError as exc:
            raise FlowParseError(f"cannot read the file ({_one_line(exc.strerror or exc)})")
        _check_zip_size(size)  # before opening: a huge file is never touched
        try:
            fh = open(source, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise FlowParseError(f"cannot read the file ({_one_line(exc.strerror or exc)})")
        with fh:
            yield fh
    elif source.seekable():
        start = source.tell()
        end = source.seek(0, io.SEEK_END)
        source.seek(start)
        _check_zip_size(end - start)
        yield source
    else:
        # A stream has no size to ask for: read one byte past the cap and no further.
        data = source.read(MAX_ZIP_BYTES + 1)
        _check_zip_size(len(data))
        yield io.BytesIO(data)


def _check_zip_size(size: int) -> None:
    if size > MAX_ZIP_BYTES:
        raise FlowParseError(f"ZIP file too large ({size} bytes; the limit is {MAX_ZIP_BYTES})")


def _too_many_entries(count: int) -> str:
    return f"ZIP file has too many entries ({count}; the limit is {MAX_ZIP_ENTRIES})"


def _declared_entry_count(fp: BinaryIO) -> int | None:
    """The entry count from the end-of-central-directory record, if one is found.

    zipfile builds a ZipInfo for every central directory entry before we could count them; a
    20 MB archive can declare several hundred thousand. This cheap look at the trailer refuses
    such archives first (the real count is checked again after opening).
    """
    try:
        start = fp.tell()
        size = fp.seek(0, io.SEEK_END) - start
        tail_len = min(size, 22 + 0xFFFF)  # record + longest comment
        fp.seek(start + size - tail_len)
        tail = fp.read(tail_len)
        fp.seek(start)
    except (OSError, ValueError):
        return None
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + 22 > len(tail):
        return None
    _sig, _disk, _cd_disk, on_disk, total, _size, _offset, _comment = struct.unpack(
        "<4s4H2LH", tail[pos : pos + 22]
    )
    count = max(on_disk, total)
    return None if count == 0xFFFF else count  # 0xFFFF: ZIP64, zipfile's count is checked later


class _MemberReader:
    """Reads members one at a time, counting the bytes that really come out of the inflater.

    Headers can lie about sizes; zipfile stops at the declared size and then fails the CRC check,
    but counting real bytes against the caps does not depend on that.
    """

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.used = 0

    def read(self, info: zipfile.ZipInfo) -> bytes:
        name = _one_line(info.filename)
        if info.file_size > MAX_MEMBER_BYTES:
            raise FlowParseError(
                f"{name} expands too far ({info.file_size} bytes; the limit is {MAX_MEMBER_BYTES})"
            )
        limit = min(MAX_MEMBER_BYTES, MAX_UNCOMPRESSED_BYTES - self.used)
        try:
            with self.archive.open(info) as fh:
                data = fh.read(limit + 1)
        except (
            zipfile.BadZipFile,
            zlib.error,
            EOFError,
            OSError,
            NotImplementedError,
            RuntimeError,
            ValueError,
        ) as exc:
            raise FlowParseError(f"cannot read {name} from the ZIP ({_one_line(exc)})")
        if len(data) > limit:
            raise FlowParseError(f"ZIP file expands too far ({name} inflates beyond the limit)")
        self.used += len(data)
        return data


def _parse_archive(archive: zipfile.ZipFile) -> FlowExport:
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise FlowParseError(_too_many_entries(len(infos)))
    declared = sum(info.file_size for info in infos)
    if declared > MAX_UNCOMPRESSED_BYTES:
        raise FlowParseError(
            f"ZIP file expands too far ({declared} bytes uncompressed; "
            f"the limit is {MAX_UNCOMPRESSED_BYTES})"
        )

    # Pick members by name only; the dicts keep the last of duplicate names, as zipfile does.
    manifest_info: zipfile.ZipInfo | None = None
    parameters_info: zipfile.ZipInfo | None = None
    flows: dict[str, zipfile.ZipInfo] = {}
    scripts: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename.replace("\\", "/").lstrip("/")
        lower = name.lower()
        if lower == MANIFEST_PATH:
            manifest_info = info
        elif lower == PARAMETERS_PATH:
            parameters_info = info
        elif lower.startswith(FLOW_DIR) and lower.endswith(".iflw"):
            flows[name] = info
        elif lower.startswith(SCRIPT_DIR) and lower.endswith(SCRIPT_SUFFIXES):
            scripts[name] = info
    if not flows:
        raise FlowParseError(
            "no integration flow in the ZIP (expected src/main/resources/scenarioflows/"
            "integrationflow/*.iflw)"
        )
    if manifest_info is None:
        raise FlowParseError("no META-INF/MANIFEST.MF in the ZIP (not an integration flow export)")

    reader = _MemberReader(archive)
    headers = _parse_manifest(reader.read(manifest_info))
    bundle_id = headers.get("Bundle-SymbolicName", "").split(";", 1)[0].strip()
    if not bundle_id:
        raise FlowParseError("META-INF/MANIFEST.MF names no Bundle-SymbolicName")
    bundle_name = headers.get("Bundle-Name", "").strip() or bundle_id
    version = headers.get("Bundle-Version", "").strip()

    parameters: dict[str, str] = {}
    if parameters_info is not None:
        parameters = parse_parameters(reader.read(parameters_info))

    warnings: list[str] = []
    usages: list[KeyUsage] = []
    flow_names: list[str] = []
    unresolved: list[str] = []
    script_steps: list[ScriptStep] = []
    for name, info in flows.items():
        flow_name = name.rsplit("/", 1)[-1][: -len(".iflw")]
        flow_names.append(flow_name)
        # One member in memory at a time: read, parse, drop.
        usages += parse_iflw(
            reader.read(info),
            parameters,
            flow_name=flow_name,
            warnings=warnings,
            unresolved_parameters=unresolved,
            script_steps=script_steps,
        )
    if len(flows) > 1:
        warnings.append(f"the export holds {len(flows)} integration flows; all were indexed")

    for name, info in scripts.items():
        steps = _steps_running(name, script_steps)
        usages += _script_usages(name, reader.read(info), steps, warnings)

    return FlowExport(
        bundle_id,
        bundle_name,
        version,
        flow_names,
        usages,
        warnings,
        list(dict.fromkeys(unresolved)),
    )


def _parse_manifest(data: bytes) -> dict[str, str]:
    """Main-section headers of a JAR manifest (lines wrap at 72 bytes, continued after a space)."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    headers: dict[str, str] = {}
    last = ""
    for line in _LINE_BREAK.split(text):
        if line.startswith(" ") and last:
            headers[last] += line[1:]
        elif not line:
            if headers:
                break  # the main section ends at the first blank line
        else:
            name, sep, value = line.partition(":")
            if sep:
                last = name.strip()
                headers[last] = value.lstrip(" ")
    return headers


# ---------------------------------------------------------------------------------------------
# parameters.prop (java.util.Properties)

_PROPERTY_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|(u)|(.)|$)", re.DOTALL)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")
_SPECIAL = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_parameters(text: bytes | str) -> dict[str, str]:
    """Parse a Java .properties file as `java.util.Properties.load` does.

    Comment lines start with `#` or `!`; a pair is `key=value`, `key:value` or `key value`;
    escapes `\\uXXXX`, `\\t`, `\\n`, `\\r`, `\\f` and `\\<char>` (so `\\:`, `\\=`, `\\ `); a line
    ending in an odd number of backslashes continues on the next one (leading blanks dropped).
    Bytes are read as UTF-8, falling back to ISO-8859-1 (what Properties.store writes).
    """
    if isinstance(text, bytes | bytearray):
        raw = bytes(text).removeprefix(b"\xef\xbb\xbf")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("iso-8859-1")
    result: dict[str, str] = {}
    logical: list[str] = []
    for line in _LINE_BREAK.split(text):
        line = line.lstrip(" \t\f")
        if not logical and (not line or line[0] in "#!"):
            continue  # comments never continue, even when they end in a backslash
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2:
            logical.append(line[:-1])
            continue
        logical.append(line)
        key, value = _split_property("".join(logical))
        result[key] = value
        logical = []
    if logical:  # the file ended inside a continuation
        key, value = _split_property("".join(logical))
        result[key] = value
    return result


def _split_property(line: str) -> tuple[str, str]:
    end = len(line)
    i = 0
    while i < end:
        c = line[i]
        if c == "\\":
            i += 2
            continue
        if c in "=: \t\f":
            break
        i += 1
    key_end = min(i, end)
    has_separator = key_end < end and line[key_end] in "=:"
    j = key_end + 1
    while j < end:
        c = line[j]
        if c in " \t\f":
            j += 1
        elif not has_separator and c in "=:":
            has_separator = True
            j += 1
        else:
            break
    return _unescape(line[:key_end]), _unescape(line[j:])


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text

    def replace(match: re.Match[str]) -> str:
        hex_digits, bad_u, char = match.groups()
        if hex_digits:
            return chr(int(hex_digits, 16))
        if bad_u:
            raise FlowParseError("parameters.prop: malformed \\uxxxx escape")
        if char is None:
            return ""  # a lone backslash at the very end
        return _SPECIAL.get(char, char)

    result = _PROPERTY_ESCAPE.sub(replace, text)
    if _SURROGATE.search(result):
        # \uD83D\uDE00 style pairs: Java strings are UTF-16, join the halves into one character.
        result = result.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return result


# ---------------------------------------------------------------------------------------------
# .iflw

_PARAMETER = re.compile(r"\{\{([^{}]*)\}\}")

_ADAPTER_NAMES = {
    "soap": "SOAP",
    "http": "HTTP",
    "https": "HTTPS",
    "idoc": "IDoc",
    "hciodata": "OData",
    "odata": "OData",
    "odatav4": "OData",
    "as2": "AS2",
    "as4": "AS4",
    "successfactors": "SuccessFactors",
    "mail": "Mail",
    "sftp": "SFTP",
    "ftp": "FTP",
    "processdirect": "ProcessDirect",
    "xi": "XI",
    "jms": "JMS",
    "amqp": "AMQP",
    "kafka": "Kafka",
    "ariba": "Ariba",
    "rfc": "RFC",
    "ldap": "LDAP",
    "elster": "ELSTER",
}
# Sender channels of these adapters poll or subscribe, so CPI opens the connection itself.
_POLLING_ADAPTERS = frozenset(
    {"SFTP", "FTP", "Mail", "OData", "SuccessFactors", "Ariba", "AMQP", "Kafka"}
)
_SSH_ADAPTERS = frozenset({"SFTP"})
# Address-bearing keys seen in exports, the usual ones first: AS2 spells its receiver's URL
# "receipientURL", AS4 "endpointUrl"; SFTP and Mail name a host (maybe with a port beside it).
_ADDRESS_KEYS = (
    "address",
    "Address",
    "httpAddressWithoutQuery",
    "receipientURL",
    "recipientURL",
    "endpointUrl",
    "endpointURL",
    "url",
    "URL",
    "addressURL",
    "hostUrl",
    "urlPath",
    "host",
    "Host",
    "server",
)
_HOST_KEYS = frozenset({"host", "Host", "server"})
_PORT_KEYS = ("port", "Port")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_AUTH_KEYS = frozenset(
    {"authentication", "authenticationmethod", "authenticationtype", "authtype", "authmethod"}
)
_ON = frozenset({"true", "1", "yes", "on", "y", "enabled", "x"})
_OFF = frozenset({"false", "0", "no", "off", "n", "none", "disabled", "notrequired"})
# operation -> usage, and the word a switch for it contains
_OPS = {
    "sign": (Usage.SIGNING, "sign"),
    "verify": (Usage.VERIFICATION, "verif"),
    "encrypt": (Usage.ENCRYPTION, "encrypt"),
    "decrypt": (Usage.DECRYPTION, "decrypt"),
    "mdnsign": (Usage.SIGNING, "mdn"),
    "mdnverify": (Usage.VERIFICATION, "mdn"),
}


def parse_iflw(
    xml: bytes,
    parameters: Mapping[str, str] | None = None,
    *,
    flow_name: str = "",
    warnings: list[str] | None = None,
    unresolved_parameters: list[str] | None = None,
    script_steps: list[ScriptStep] | None = None,
) -> list[KeyUsage]:
    """Key usages of one `.iflw` document, in document order (channels, then steps).

    `parameters` resolves `{{name}}` references; with None values are left as they are. A name
    `parameters` does not hold is left as written and appended to `unresolved_parameters`: it
    changes nothing unless an alias or authentication property holds it, which then becomes a
    "may use" row naming the parameter. Warnings (runtime-expression aliases) are appended to
    `warnings`, the steps that run scripts to `script_steps`. One parse, then one walk over the
    collaboration and the processes; the diagram is skipped.
    """
    label = f"integration flow {flow_name!r}" if flow_name else "integration flow"
    root = _parse_xml(xml, label)
    tag = root.tag
    ns = tag[: tag.index("}") + 1] if tag.startswith("{") else ""
    if tag[len(ns) :] != "definitions":
        raise FlowParseError(
            f"{label}: not a BPMN integration flow (root element {tag[len(ns) :]})"
        )
    ctx = _Context(
        ns,
        parameters,
        label,
        warnings if warnings is not None else [],
        unresolved_parameters if unresolved_parameters is not None else [],
        script_steps if script_steps is not None else [],
    )
    # Single-byte searches (memchr, unlike multi-byte ones) spare the per-value check in a
    # document without references; a character reference or UTF-16 could hide the braces.
    ctx.has_references = parameters is not None and (
        b"{" in xml or b"&" in xml or b"\x00" in xml[:4]
    )
    return _extract(root, ctx)


def _extract(root: ET.Element, ctx: _Context) -> list[KeyUsage]:
    """The single walk: participants and channels of the collaboration, then the processes."""
    ns = ctx.ns
    participants: dict[str, str] = {}
    channels: list[ET.Element] = []
    usages: list[KeyUsage] = []
    processes: list[ET.Element] = []
    for section in root:
        local = section.tag[len(ns) :]
        if local == "collaboration":
            for el in section:
                el_local = el.tag[len(ns) :]
                if el_local == "participant":
                    participants[el.get("id", "")] = el.get("name", "")
                elif el_local == "messageFlow":
                    channels.append(el)
        elif local == "process":
            processes.append(section)
    for el in channels:
        props = ctx.properties(el)
        if props:
            usages += _channel_usages(el, props, participants, ctx)
    for process in processes:
        _walk_process(process, ctx, usages)
    return usages


class _Context:
    """Per-document constants, the shared result lists, and the parameters the component being
    read left unresolved."""

    __slots__ = (
        "ns",
        "ext",
        "doc",
        "sub",
        "parameters",
        "has_references",
        "label",
        "warnings",
        "unresolved",
        "script_steps",
        "unset",
        "values",
    )

    def __init__(
        self,
        ns: str,
        parameters: Mapping[str, str] | None,
        label: str,
        warnings: list[str],
        unresolved: list[str],
        script_steps: list[ScriptStep],
    ) -> None:
        self.ns = ns
        self.ext = ns + "extensionElements"
        self.doc = ns + "documentation"
        self.sub = ns + "subProcess"
        self.parameters = parameters
        self.has_references = False  # False when the bytes prove there is no "{{" reference
        self.label = label
        self.warnings = warnings
        self.unresolved = unresolved
        self.script_steps = script_steps
        # Parameter names the current component's properties left unresolved (usually empty).
        self.unset: frozenset[str] = frozenset()
        # The current component's values joined by NUL, when looking for references joined
        # them and none was found: the rules reuse the string (see _alias_entries).
        self.values: str | None = None

    def unset_parameter(self, value: str) -> str:
        """The first parameter of `value` that parameters.prop does not set, or ""."""
        if self.unset and "{{" in value:
            for match in _PARAMETER.finditer(value):
                if match.group(1) in self.unset:
                    return match.group(1)
        return ""

    def properties(self, el: ET.Element) -> dict[str, str]:
        """The element's ifl:property pairs, parameters resolved ({} when it has none)."""
        if self.unset:
            self.unset = frozenset()
        for child in el:
            if child.tag == self.ext:
                break
            if child.tag != self.doc:  # extensionElements follows documentation, or nothing
                return {}
        else:
            return {}
        # Fast path for what exports contain: <key> then <value> in every ifl:property. By
        # index, not by unpacking: an Element unpacks through the sequence protocol, which ends
        # each property with an IndexError (half the cost of this line, which runs for every
        # property of every channel and step).
        fast: dict[str | None, str] = {
            k.text: prop[1].text or ""
            for prop in child
            if len(prop) == 2 and (k := prop[0]).tag == "key"
        }
        props: dict[str, str]
        if len(fast) != len(child):  # other shapes, order, namespaced, duplicates: read slowly
            props = _properties_leniently(child)
        else:
            fast.pop(None, None)  # an empty <key/>
            props = cast("dict[str, str]", fast)  # no None key left
        self.values = None
        if self.has_references:
            # One search of the joined values spares a look at each value of most components.
            values = "\0".join(props.values())
            if "{{" not in values:
                self.values = values
            else:
                for key, value in props.items():
                    if "{{" in value:
                        props[key] = self.resolve(value)
        return props

    def resolve(self, value: str) -> str:
        """`value` with its parameters resolved; unset ones stay as written (see parse_iflw)."""
        parameters = self.parameters
        assert parameters is not None

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in parameters:
                return parameters[name]
            if name.strip() in parameters:
                return parameters[name.strip()]
            self.unresolved.append(name)
            self.unset |= {name}
            return match.group(0)

        return _PARAMETER.sub(replace, value)


def _properties_leniently(ext: ET.Element) -> dict[str, str]:
    """ifl:property pairs in any child order or namespace; children other than key/value ignored."""
    props: dict[str, str] = {}
    for prop in ext:
        key = value = None
        for part in prop:
            local = part.tag.rpartition("}")[2]
            if local == "key":
                key = part.text
            elif local == "value":
                value = part.text
        if key and key.strip():
            props[key.strip()] = value or ""
    return props


def _parse_xml(data: bytes, label: str) -> ET.Element:
    """Parse untrusted XML without ever expanding an entity.

    The C parser is several times faster than defusedxml (which runs expat's callbacks in
    Python), so it parses documents that provably have no DTD: ASCII-compatible bytes (expat only
    accepts encodings that keep ASCII markup characters as they are; UTF-16 shows NUL bytes or a
    BOM) whose prolog holds no `<!` declaration. Everything else goes through defusedxml, which
    refuses a DTD at its first byte.

    Elements nested deeper than MAX_XML_DEPTH are refused: while parsing for documents over
    _STREAM_XML_BYTES, right after the parse (before any other work) for smaller ones.
    """
    head = data[:4]
    plain = (
        b"\x00" not in head
        and not head.startswith((b"\xff\xfe", b"\xfe\xff"))
        and not _prolog_has_declaration(data)
    )
    try:
        if len(data) > _STREAM_XML_BYTES:
            return _parse_xml_checking_depth(data, label)
        root = (
            ET.fromstring(data)  # noqa: S314 - no DTD is possible, checked above
            if plain
            else DefusedET.fromstring(data, forbid_dtd=True)
        )
    except DefusedXmlException:
        raise FlowParseError(
            f"{label}: XML with a DTD or entity declarations is refused (never expanded)"
        )
    except ET.ParseError as exc:
        raise FlowParseError(f"{label}: malformed XML ({_one_line(exc)})")
    # Level by level, no recursion, keeping only the elements with children (C-level
    # iteration): an element at depth MAX_XML_DEPTH + 1 exists exactly when one with children
    # exists at depth MAX_XML_DEPTH. Leaves (most elements) never enter a level list.
    branches: list[ET.Element] = [root] if len(root) else []
    for _ in range(MAX_XML_DEPTH - 1):
        if not branches:
            return root
        branches = list(filter(len, chain.from_iterable(branches)))
    if not branches:
        return root
    raise FlowParseError(_too_deep(label))


def _parse_xml_checking_depth(data: bytes, label: str) -> ET.Element:
    """`_parse_xml` for large documents: counts the depth on expat's events as it reads (16 KB
    at a time), so a deep document is dropped before the rest of it is read."""
    events = DefusedET.iterparse(io.BytesIO(data), ("start", "end"), forbid_dtd=True)
    root: ET.Element | None = None
    depth = 0
    for event, el in events:
        if event == "end":
            depth -= 1
            continue
        depth += 1
        if depth > MAX_XML_DEPTH:
            raise FlowParseError(_too_deep(label))
        if root is None:
            root = el
    if root is None:  # expat reports this first; never trust that blindly
        raise FlowParseError(f"{label}: malformed XML (no element found)")
    return root


def _too_deep(label: str) -> str:
    return f"{label}: elements nested deeper than {MAX_XML_DEPTH} levels (the limit)"


def _prolog_has_declaration(data: bytes) -> bool:
    """Does anything but comments and processing instructions precede the root element as `<!`?

    A DOCTYPE is only legal in the prolog; after the root element starts, expat rejects one
    before reading its entities. Scanning just the prolog (single-byte finds, fast) instead of
    the whole document for "<!DOCTYPE" keeps the safety check off the parse time.
    """
    pos = 0
    while True:
        start = data.find(b"<", pos)
        if start < 0:
            return False  # no element at all: expat reports the document as malformed
        if data.startswith(b"<?", start):
            end = data.find(b"?>", start + 2)
            pos = end + 2
        elif data.startswith(b"<!--", start):
            end = data.find(b"-->", start + 4)
            pos = end + 3
        else:
            return data.startswith(b"<!", start)  # a declaration, or the root element
        if end < 0:
            return False  # unterminated: expat reports it before reaching anything else


def _walk_process(process: ET.Element, ctx: _Context, usages: list[KeyUsage]) -> None:
    """The steps of a process in document order, subprocesses included (an explicit stack of
    child iterators, no recursion; `_parse_xml` bounds its height by MAX_XML_DEPTH)."""
    stack = [iter(process)]
    while stack:
        for el in stack[-1]:
            props = ctx.properties(el)
            if props:
                usages += _step_usages(el, props, ctx)
                script = props.get("script")
                if script:  # a script step: its usages come from the file (_script_usages)
                    ctx.script_steps.append(
                        ScriptStep(script.strip(), el.get("id", ""), el.get("name", ""))
                    )
            if el.tag == ctx.sub:  # exception and event subprocesses hold steps of their own
                stack.append(iter(el))
                break  # its steps first, then this level's next sibling
        else:
            stack.pop()


def _cname(props: Mapping[str, str]) -> str:
    uri = props.get("cmdVariantUri", "")
    _, found, rest = uri.partition("cname::")
    return rest.split("/", 1)[0] if found else ""


def _uri_part(props: Mapping[str, str], part: str) -> str:
    _, found, rest = props.get("cmdVariantUri", "").partition(part + "::")
    return rest.split("/", 1)[0] if found else ""


def _alias_op(key_lower: str) -> str:
    """The operation an alias property's name announces ("" for a plain alias)."""
    if "mdn" in key_lower or "receipt" in key_lower:
        if "verif" in key_lower or "public" in key_lower:
            return "mdnverify"
        if "sign" in key_lower:
            return "mdnsign"
    if "verif" in key_lower:
        return "verify"
    if "decrypt" in key_lower:
        return "decrypt"
    if "encrypt" in key_lower:
        return "decrypt" if "private" in key_lower else "encrypt"
    if "sign" in key_lower:
        return "verify" if "public" in key_lower else "sign"
    return ""


def _switch_matches(key_lower: str, op: str) -> bool:
    """Is this (non-alias) property an on/off switch for `op`?"""
    if "alias" in key_lower or "algorithm" in key_lower:
        return False
    mdn = "mdn" in key_lower or "receipt" in key_lower
    if op in ("mdnsign", "mdnverify"):
        return mdn
    if mdn:  # a signed-MDN request says nothing about signing the message itself
        return False
    if op == "sign":
        return "sign" in key_lower and "verif" not in key_lower
    return _OPS[op][1] in key_lower


_OP_WORDS = ("sign", "encrypt", "decrypt", "verif")


def _flag_allows(props: Mapping[str, str], op: str) -> bool:
    """False only if the component has clear on/off switches for `op` and none of them is on."""
    word = _OPS[op][1]
    seen_off = False
    for key, value in props.items():
        if value.startswith("<row") or not _switch_matches(key.lower(), op):
            continue  # tables are configuration lists, not switches
        vl = value.strip().lower()
        if vl in _ON or word in vl:  # "true", or a type naming it: "SignAndEncryptContent"
            return True
        if vl in _OFF or any(other in vl for other in _OP_WORDS):
            seen_off = True  # "None", or a type naming only other operations: "SignContent"
    return not seen_off


_WSS_DIRECTIONS = ("outbound", "inbound")


def _wss_allows(props: Mapping[str, str], direction: str) -> dict[str, bool] | None:
    """Which operations SOAP WS-Security enables, or None when the channel has no WS-Security.

    `WSSecurity_outbound` (receivers) and `WSSecurity_inbound` (senders) switch it on or off:
    when the channel's direction has a switch, only that direction counts, and a switch that is
    off ("None") turns off everything of WS-Security, whatever stale type, algorithm or alias
    properties the channel still carries. Settings without a direction
    (`WSSecurity_SignatureAlgorithm`) are never switches.
    """
    switches: dict[str, str] = {}
    types: dict[str, list[str]] = {}
    for key, value in props.items():
        kl = key.lower()
        if not kl.startswith("wssecurity"):
            continue
        head, _, suffix = kl.partition("_")
        if suffix in _WSS_DIRECTIONS:
            vl = value.strip().lower()
            if head == "wssecurity":
                switches[suffix] = vl
            else:  # WSSecurityType_outbound: which operations
                types.setdefault(suffix, []).append(vl)
    if not switches and not types:
        return None
    own = "inbound" if direction == "Sender" else "outbound"
    if own in switches or own in types:
        directions: Iterable[str] = (own,)
    else:
        directions = _WSS_DIRECTIONS
    texts = []
    for name in directions:
        values = [switches[name]] if name in switches else []
        values += types.get(name, [])
        # Every switch of the direction must be on: "None" turns off a stale "SignMessage".
        if values and all(v and v not in _OFF for v in values):
            texts.append(" ".join(values))
    if not texts:
        return {"sign": False, "encrypt": False}
    text = " ".join(texts)
    sign, encrypt = "sign" in text or "verif" in text, "crypt" in text
    if not sign and not encrypt:  # e.g. based on WSDL policies: every configured alias counts
        return {"sign": True, "encrypt": True}
    return {"sign": sign, "encrypt": encrypt}


def _channel_address(props: Mapping[str, str]) -> str:
    """The endpoint of a channel: the first address-bearing key with a value (a host with the
    port beside it), else any other key whose name says URL, address or host."""
    for key in _ADDRESS_KEYS:
        value = props.get(key, "").strip()
        if value:
            if key in _HOST_KEYS and ":" not in value:
                port = next((props[k].strip() for k in _PORT_KEYS if props.get(k, "").strip()), "")
                if port:
                    return f"{value}:{port}"
            return value
    for key, value in props.items():
        kl = key.lower()
        if (
            kl.endswith(("url", "address", "host"))
            and not kl.startswith("proxy")
            and "mdn" not in kl  # where the partner returns MDNs: Cloud Integration's own URL
            and "wsdl" not in kl
            and value.strip()
        ):
            return value.strip()
    return ""


def _adapter_name(props: Mapping[str, str]) -> str:
    raw = props.get("ComponentType") or _cname(props).removeprefix("sap:")
    if not raw:
        return "Unknown"
    return _ADAPTER_NAMES.get(raw.lower(), raw)


def _client_cert_state(
    props: Mapping[str, str], adapter: str, keys: str, ctx: _Context
) -> bool | str | None:
    """True if the channel authenticates with a client certificate (SFTP: with an SSH key),
    False if it authenticates some other way, None if it has no authentication setting, or the
    name of the unset parameter its authentication comes from (it may be a client certificate).
    `keys` is `_joined_keys(props)`."""
    state: bool | str | None = None
    if "auth" not in keys:
        return state
    for kl, value in zip(keys.split("\0"), props.values(), strict=True):
        if "auth" not in kl:  # every authentication key says so; most keys end here
            continue
        if kl in _AUTH_KEYS or (
            kl.endswith(("authentication", "authenticationmethod", "authenticationtype"))
            and not kl.startswith("proxy")
        ):
            unset = ctx.unset_parameter(value)
            if unset:
                state = unset
                continue
            vl = _NOT_ALNUM.sub("", value.lower())
            if "clientcert" in vl or vl in ("certificate", "x509", "certificatebased"):
                return True
            if adapter in _SSH_ADAPTERS and ("publickey" in vl or "dual" in vl):
                return True
            if state is None:
                state = False
    return state


class _Component:
    """One channel or step being classified: collects its KeyUsage rows."""

    __slots__ = ("id", "name", "type", "direction", "system", "address", "ctx", "usages")

    def __init__(
        self,
        el: ET.Element,
        comp_type: str,
        ctx: _Context,
        direction: str = "",
        system: str = "",
        address: str = "",
    ) -> None:
        self.id = el.get("id", "")
        self.name = el.get("name", "")
        self.type = comp_type
        self.direction = direction
        self.system = system
        self.address = address
        self.ctx = ctx
        self.usages: list[KeyUsage] = []

    def add(
        self,
        usage: Usage,
        key: str,
        value: str,
        *,
        outbound: bool = False,
        any_key: bool = False,
        may: bool = False,
        reason: str = "",
    ) -> None:
        """One row: `value` is the alias. `any_key`: no alias, any fitting key may be used;
        `may`: this alias may be used (the switch deciding it is not known); `reason` says why
        for "may use" rows."""
        unset = self.ctx.unset_parameter(value)
        if any_key:
            alias, certainty = ANY_KEY, Certainty.MAY_USE
        elif "${" in value:
            # Resolved at runtime (header or property): any key may end up being used.
            self.ctx.warnings.append(
                f"{self.ctx.label}: {_one_line(self.name or self.id)!r} takes its alias ({key}) "
                f"from the runtime expression {_one_line(value)!r}; listed as 'may use' any key"
            )
            alias, certainty = ANY_KEY, Certainty.MAY_USE
            reason = f"alias from the runtime expression {_one_line(value)}"
        elif unset:
            # Set in the tenant, or not at all: nobody can say which key from the export.
            alias, certainty = ANY_KEY, Certainty.MAY_USE
            reason = f"alias from parameter {{{{{_one_line(unset)}}}}}, not set in the export"
        elif may:
            alias, certainty = value, Certainty.MAY_USE
        else:
            alias, certainty = value, Certainty.USES
        self.usages.append(
            KeyUsage(
                component_id=self.id,
                component_name=self.name,
                component_type=self.type,
                direction=self.direction,
                usage=usage,
                certainty=certainty,
                alias=alias,
                property_key=key,
                system=self.system,
                address=self.address,
                outbound=outbound,
                reason=reason,
            )
        )

    def add_unclassified(self, entries: Iterable[_AliasEntry]) -> None:
        """Alias-like properties no rule consumed: kept, so nothing that may use a key is lost."""
        for entry in entries:
            if entry.value and entry.value.lower() not in ("true", "false"):
                self.add(Usage.UNCLASSIFIED, entry.key, entry.value)


class _AliasEntry(NamedTuple):
    key: str  # the ifl:property
    name: str  # lower-cased words that tell the operation: the key, plus a table column's id
    value: str  # the alias, stripped ("" when not configured)


_TABLE_ROW = re.compile(r"<row>(.*?)</row>", re.DOTALL)
_TABLE_CELL = re.compile(r"<cell(?:\s[^>]*?\bid\s*=\s*['\"]([^'\"]*)['\"])?[^>]*>([^<]*)</cell>")


def _joined_keys(props: Mapping[str, str]) -> str:
    """The property keys, lower-cased, in one string: one search answers "does any key say...".
    (NUL cannot occur in XML, so no match spans two keys.)"""
    return "\0".join(props).lower()


def _alias_entries(
    props: Mapping[str, str], keys: str, values: str | None = None
) -> list[_AliasEntry]:
    """Alias-like properties: keys naming an alias, and alias columns of table-valued properties
    (`<row><cell id='PrivateKeyAlias'>k</cell>...</row>`, e.g. signers or S/MIME key lists).
    `keys` is `_joined_keys(props)`, `values` the values joined by NUL if already at hand.

    Proxy settings (`proxyAlias`) name no keystore entry and are left out.
    """
    # A few searches instead of a look at every property: whether any value is a table, and
    # whether any key names an alias.
    if values is None:
        values = "\0".join(props.values())
    if "<row" not in values:
        if "lias" not in keys:
            return []
        return [
            _AliasEntry(key, key.lower(), props[key].strip())
            for key in props
            if ("lias" in key or "LIAS" in key) and not key.startswith("proxy")
        ]
    if "lias" not in keys and (
        # As for keys: "alias", "Alias", "ALIAS" without lower-casing every table (most are
        # header and property tables of a few KB).
        "smime" not in keys and "keys" not in keys and "lias" not in values and "LIAS" not in values
    ):
        return []  # and no table can hold an alias column (see _table_entries)
    entries = []
    for key, value in props.items():
        if value[:1] == "<" and value.startswith("<row"):  # cheap test first: hot loop
            entries += _table_entries(key, value)
        elif ("lias" in key or "LIAS" in key) and not key.startswith("proxy"):
            entries.append(_AliasEntry(key, key.lower(), value.strip()))
    return entries


def _table_entries(key: str, value: str) -> list[_AliasEntry]:
    kl = key.lower()
    # Without an alias column, a key list ("encrypt.smime.keys") holds one alias per row.
    first_column = "alias" in kl or "smime" in kl or kl.endswith("keys")
    if not first_column and "alias" not in value.lower():
        # No cell id can name an alias: the usual header and property tables end here, unparsed.
        return []
    entries = []
    for row in _TABLE_ROW.findall(value):
        cells = _TABLE_CELL.findall(row)
        named = [(cid, text) for cid, text in cells if "alias" in cid.lower()]
        if not named and first_column and cells:
            named = cells[:1]
        entries += [
            _AliasEntry(key, f"{kl} {cid.lower()}", text.strip())
            for cid, text in named
            if text.strip()
        ]
    return entries


# Adapters whose plain alias properties are message-level keys (S/MIME): (public, private).
_CHANNEL_PLAIN_OPS = {"Mail": ("encrypt", "sign")}
# The usual client-certificate alias keys come first when a channel carries several aliases.
_CLIENT_CERT_KEYS = (
    "privatekeyalias",
    "odatacertauthprivatekeyalias",
    "clientcertificatealias",
    "keyalias",
    "alias",
)


def _client_cert_rank(entry: _AliasEntry) -> int:
    kl = entry.key.lower()
    if kl in _CLIENT_CERT_KEYS:
        return _CLIENT_CERT_KEYS.index(kl)
    return len(_CLIENT_CERT_KEYS) + (0 if "private" in kl or "cert" in kl else 1)


def _channel_usages(
    el: ET.Element, props: dict[str, str], participants: Mapping[str, str], ctx: _Context
) -> list[KeyUsage]:
    keys = _joined_keys(props)
    entries = _alias_entries(props, keys, ctx.values)
    if not entries and "uth" not in keys:
        return []  # nothing key-related: skip the participant and address look-ups

    adapter = _adapter_name(props)
    source, target = el.get("sourceRef", ""), el.get("targetRef", "")
    direction = (props.get("direction") or _uri_part(props, "direction")).strip()
    if direction.lower() in ("receiver", "sender"):
        direction = direction.capitalize()
    elif target in participants:
        direction = "Receiver"
    elif source in participants:
        direction = "Sender"
    # The backend is the participant at the other end of the channel.
    if direction == "Sender":
        other = source if source in participants else target
    else:
        other = target if target in participants else source
    system = (participants.get(other) or props.get("system", "")).strip()
    comp = _Component(el, adapter, ctx, direction, system, _channel_address(props))

    unhandled: list[_AliasEntry] = []
    plain: list[_AliasEntry] = []  # client-certificate alias candidates
    wss: dict[str, bool] | None | bool = False  # False: not looked at yet
    plain_ops = _CHANNEL_PLAIN_OPS.get(adapter)
    for entry in entries:
        op = _alias_op(entry.name)
        if not op and plain_ops:
            op = plain_ops[0 if "public" in entry.name else 1]
        if not op:
            # A public key cannot authenticate a client; leave it to "unclassified".
            (unhandled if "public" in entry.name else plain).append(entry)
            continue
        if not entry.value:
            continue
        if wss is False:
            wss = _wss_allows(props, direction)
        if isinstance(wss, dict) and op in ("sign", "verify", "encrypt", "decrypt"):
            allowed = wss["sign"] if op in ("sign", "verify") else wss["encrypt"]
        else:
            allowed = _flag_allows(props, op)
        if allowed:
            comp.add(_OPS[op][0], entry.key, entry.value)

    state = _client_cert_state(props, adapter, keys, ctx)
    # CPI opens the connection for receivers and polling senders; a sender channel's client
    # certificate setting is about the caller's certificate, not a key of this keystore.
    opens_connection = direction != "Sender" or adapter in _POLLING_ADAPTERS
    if state is not None and state is not False and opens_connection:
        # True, or the unset parameter that decides it: then the channel only "may" use it.
        may = state is not True
        reason = f"authentication from parameter {{{{{_one_line(state)}}}}}" if may else ""
        plain.sort(key=_client_cert_rank)
        named = next((e for e in plain if e.value), None)
        if named is not None:
            comp.add(
                Usage.CLIENT_CERTIFICATE,
                named.key,
                named.value,
                outbound=True,
                may=may,
                reason=reason + (", not set in the export" if may else ""),
            )
        elif adapter not in _SSH_ADAPTERS:  # SFTP counts only with a named SSH key
            key = plain[0].key if plain else ""
            comp.add(
                Usage.CLIENT_CERTIFICATE,
                key,
                "",
                outbound=True,
                any_key=True,
                reason=(reason + ", not set in the export; no alias") if may else NO_ALIAS,
            )
    elif state is None or (state is not False and not opens_connection):
        unhandled += plain
    # state False: Basic/OAuth/None authentication switches a leftover alias off.

    comp.add_unclassified(unhandled)
    return comp.usages


def _step_kind(props: Mapping[str, str]) -> tuple[str, str]:
    """(kind, display type) of a step; kind is "" for steps the rules do not know."""
    cname = _cname(props)
    activity = props.get("activityType", "")
    text = f"{cname} {activity} {props.get('subActivityType', '')}".lower()
    xml = "xml" in text
    if "pgp" in text:  # PGP keys live in the PGP keyring, not in the keystore
        return "", cname or activity or "PGP"
    if "decrypt" in text:
        return "decryptor", "XML decryptor" if xml else "PKCS#7 decryptor"
    if "verif" in text:
        if "simple" in text:
            return "verifier", "Simple verifier"
        return "verifier", "XML verifier" if xml else "PKCS#7 verifier"
    if "encrypt" in text:
        return "encryptor", "XML encryptor" if xml else "PKCS#7 encryptor"
    # "signer", "signmessage", "signature", but not "assign" or "design"
    if "signer" in text or "signmessage" in text or "signature" in text or text.startswith("sign"):
        if "simple" in text:
            return "signer", "Simple signer"
        return "signer", "XML signer" if xml else "PKCS#7 signer"
    if "script" in text:
        return "", "Script"
    return "", cname or activity or "Unknown"


# What a step of each kind does with a plain alias property: (public key, private key).
_STEP_PLAIN_OPS = {
    "signer": ("verify", "sign"),
    "encryptor": ("encrypt", "sign"),
    "verifier": ("verify", "verify"),
    "decryptor": ("verify", ""),
}
# The operations a step always performs; others (an encryptor that also signs) follow switches.
_STEP_PRIMARY_OPS = {
    "signer": ("sign",),
    "encryptor": ("encrypt",),
    "verifier": ("verify",),
    "decryptor": ("decrypt", "verify"),
}


def _step_usages(el: ET.Element, props: dict[str, str], ctx: _Context) -> list[KeyUsage]:
    entries = _alias_entries(props, _joined_keys(props), ctx.values)
    if not entries:
        text = _cname(props).lower() + props.get("activityType", "").lower()
        if "crypt" not in text and "sign" not in text:
            return []  # the usual step: no alias, neither a decryptor nor a signer
    kind, comp_type = _step_kind(props)
    if not entries and kind not in ("decryptor", "signer"):
        return []
    comp = _Component(el, comp_type, ctx)
    if kind == "decryptor":
        # PKCS#7 decryption tries every key pair in the keystore that fits the message.
        comp.add(Usage.DECRYPTION, "", "", any_key=True, reason=TRIES_EVERY_KEY)
    elif kind == "signer" and not any(entry.value for entry in entries):
        # No alias configured (real PKCS#7 signers come without the property): any key pair.
        comp.add(Usage.SIGNING, "", "", any_key=True, reason=SIGNER_WITHOUT_ALIAS)

    unhandled: list[_AliasEntry] = []
    for entry in entries:
        op = _alias_op(entry.name)
        if not op and kind:
            op = _STEP_PLAIN_OPS[kind][0 if "public" in entry.name else 1]
        if not op:
            unhandled.append(entry)  # an unknown step, or a private alias on a decryptor
            continue
        if entry.value and (op in _STEP_PRIMARY_OPS.get(kind, ()) or _flag_allows(props, op)):
            comp.add(_OPS[op][0], entry.key, entry.value)

    comp.add_unclassified(unhandled)
    return comp.usages


# ---------------------------------------------------------------------------------------------
# Scripts

# Keystore methods whose first argument is a key alias: CPI's KeystoreService (getKey,
# getKeyPair, getCertificate, getKeyManagers) and java.security.KeyStore.
_KEYSTORE_CALL = re.compile(
    r"\b(getKey|getKeyPair|getKeyManagers|getCertificate|getCertificateChain|getEntry"
    r"|containsAlias|isKeyEntry|isCertificateEntry|getCreationDate)\s*\(\s*"
)
_LITERAL = re.compile(r""""((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|`([^`\\]*)`""")
_ARGUMENT_END = re.compile(r"\s*[,)]")
# A variable or constant (`alias`, `this.ALIAS`, `Keys.SIGNING`): its last name is looked up.
_NAME_ARGUMENT = re.compile(r"(?:[A-Za-z_$][\w$]*\s*\.\s*)*([A-Za-z_$][\w$]*)\s*[,)]")
_ASSIGNMENT = re.compile(r"(?<![\w$.])([A-Za-z_$][\w$]*)\s*=(?![=~])\s*")
_STATEMENT_END = re.compile(r"[ \t]*(?:;|\r|\n|//|/\*|,|\)|\}|$)")


def find_script_aliases(script: str) -> list[ScriptAlias]:
    """What a Groovy or JavaScript source passes to keystore APIs that take a key alias, in
    order of first mention.

    Counted: the first argument of `getKey`, `getKeyPair`, `getKeyManagers`, `getCertificate`,
    `getCertificateChain`, `getEntry`, `containsAlias`, ... (CPI's `KeystoreService` and
    `java.security.KeyStore`) when it is a string literal, or a variable or constant of the same
    script assigned string literals (each of them). An argument known only at runtime (an
    interpolated string, a header, a variable assigned anything else) is reported as ANY_KEY.
    Nothing counts unless the script mentions a keystore at all (a `getEntry` on a ZIP file is
    no key). Literals passed to credential and secure-parameter APIs (`getUserCredential`,
    `getSecureParameter`, OAuth token look-ups) name credentials, never keys, and other literals
    are header and property names: neither is reported.

    The literals are kept as written; the where-used report matches them against the tenant's
    aliases when it is asked, so a key created after the import is found.
    """
    if "keystore" not in script.lower():
        return []
    assignments: _Assignments | None = None  # read when a call passes a name, not before
    hits: dict[str, str] = {}  # alias (or ANY_KEY) -> API call, in order of first mention
    for call in _KEYSTORE_CALL.finditer(script):
        method, pos = call.group(1), call.end()
        if script.startswith(")", pos):
            continue  # no argument: Map.Entry.getKey(), not the keystore
        literal = _literal_at(script, pos, _ARGUMENT_END)
        values: list[str | None]
        if literal is not None:
            values = [literal]
        else:
            if assignments is None:
                assignments = _assignments(script)
            constants, runtime = assignments
            name = _NAME_ARGUMENT.match(script, pos)
            variable = name.group(1) if name else ""
            values = list(constants.get(variable, ()))
            if not values or variable in runtime:
                values.append(None)
        for value in values:
            alias = ANY_KEY if value is None else value.strip()
            if (value is None or alias) and alias not in hits:
                hits[alias] = method
    return [ScriptAlias(alias, method) for alias, method in hits.items()]


class _Assignments(NamedTuple):
    constants: dict[str, list[str]]  # variable -> the string literals assigned to it
    runtime: set[str]  # variables assigned anything else


def _assignments(script: str) -> _Assignments:
    found = _Assignments({}, set())
    for match in _ASSIGNMENT.finditer(script):
        literal = _literal_at(script, match.end(), _STATEMENT_END)
        if literal is None:
            found.runtime.add(match.group(1))
        else:
            found.constants.setdefault(match.group(1), []).append(literal)
    return found


def _literal_at(script: str, pos: int, end: re.Pattern[str]) -> str | None:
    """The string literal at `pos` if it is the whole expression there (followed by `end`),
    else None; an interpolated string ("${x}", `${x}`) is a runtime value, so None too."""
    match = _LITERAL.match(script, pos)
    if match is None or end.match(script, match.end()) is None:
        return None
    text = next(g for g in match.groups() if g is not None)
    if "${" in text and not match.group(0).startswith("'"):
        return None
    return text


def script_usages(path: str, script: bytes | str) -> list[KeyUsage]:
    """`find_script_aliases` as KeyUsage rows of a script no step runs: "named in script",
    component type "Script", component id = `path` (inside the ZIP), name = the file name."""
    return _script_usages(path, script, [], [])


def _steps_running(path: str, steps: Iterable[ScriptStep]) -> list[ScriptStep]:
    """The steps whose `script` property names the file at `path` (inside the ZIP)."""
    relative = path[len(SCRIPT_DIR) :] if path.lower().startswith(SCRIPT_DIR) else path
    file_name = relative.rsplit("/", 1)[-1]
    found: dict[str, ScriptStep] = {}
    for step in steps:
        ref = step.script.replace("\\", "/").lstrip("/")
        for prefix in (SCRIPT_DIR, "script/"):
            if ref.lower().startswith(prefix):
                ref = ref[len(prefix) :]
        if ref == relative or ("/" not in ref and ref == file_name):
            found.setdefault(step.component_id, step)
    return list(found.values())


def _script_usages(
    path: str, script: bytes | str, steps: list[ScriptStep], warnings: list[str]
) -> list[KeyUsage]:
    """Rows for what the script passes to keystore APIs: one set per step that runs it (the
    component), or with the file as the component when no step names it."""
    name = path.rsplit("/", 1)[-1]
    if isinstance(script, bytes):
        raw = script
        try:
            script = raw.decode("utf-8")
        except UnicodeDecodeError:
            script = raw.decode("utf-8", errors="replace")
            warnings.append(f"script {_one_line(name)!r} is not UTF-8; read with replacements")
    found = find_script_aliases(script)
    if not found:
        return []
    components = [(step.component_id, step.component_name) for step in steps] or [(path, name)]
    usages = []
    for found_alias in found:
        runtime = found_alias.alias == ANY_KEY
        if runtime:
            warnings.append(
                f"script {_one_line(name)!r} passes a value known only at runtime to "
                f"{found_alias.call}(); listed as 'may use' any key"
            )
        usages += [
            KeyUsage(
                component_id=component_id,
                component_name=component_name,
                component_type="Script",
                direction="",
                usage=Usage.NAMED_IN_SCRIPT,
                certainty=Certainty.MAY_USE if runtime else Certainty.USES,
                alias=found_alias.alias,
                property_key=found_alias.call,
                system="",
                address="",
                outbound=False,
                reason=f"{found_alias.call}() with a value known only at runtime"
                if runtime
                else "",
                script_file=path,
            )
            for component_id, component_name in components
        ]
    return usages


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(value: object, limit: int = 200) -> str:
    """Messages are one line: control characters out, long values cut."""
    text = _CONTROL.sub(" ", str(value)).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"
