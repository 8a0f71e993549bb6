"""Give a user a role on a tenant (replacing the role they held there)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from keystore import permissions, roles
from keystore.management.commands import get_tenant


class Command(BaseCommand):
    help = "Give a user a role on a tenant: Administrator, IntegrationDeveloper or ReadOnly."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("tenant", help="tenant slug")
        parser.add_argument("role", choices=list(permissions.ROLES))

    def handle(self, *args, **options) -> None:
        username = options["username"]
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"Unknown user {username!r}.")
        tenant = get_tenant(options["tenant"])
        try:
            roles.assign_role(user, tenant, options["role"])
        except ValueError as error:
            raise CommandError(str(error))
        self.stdout.write(f"{username} is now {options['role']} of tenant {tenant.slug}.")
