"""Create or update the renewals' django-q2 schedules (also done after every migrate)."""

from django.core.management.base import BaseCommand

from renewals.tasks import ensure_schedules


class Command(BaseCommand):
    help = "Create or update the recurring automatic-activation scan, found by its name."

    def handle(self, *args, **options) -> None:
        schedule = ensure_schedules()
        self.stdout.write(
            f"Schedule {schedule.name!r}: {schedule.func} every {schedule.minutes} minutes, "
            f"next run {schedule.next_run:%Y-%m-%d %H:%M:%S} UTC."
        )
