"""``manage.py create_token USER [--name NAME] [--days N]``: a bearer token for the write API, printed once."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from webapp.models import ApiToken


class Command(BaseCommand):
    help = ("Make an API token for a staff user and print it (only its SHA-256 is stored: it is shown this once). "
            "Use it as `Authorization: Bearer <token>` on POST /api/items and /api/items/suggest.")

    def add_arguments(self, parser):
        parser.add_argument("user", help="username of an active staff user (createsuperuser makes one)")
        parser.add_argument("--name", default="", help="what or who uses the token, e.g. 'catalog feed'")
        parser.add_argument("--days", type=int, default=None, help="expires after this many days (default: never)")

    def handle(self, *args, user, name="", days=None, **opts):
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more")
        if len(name) > 100:
            raise CommandError("--name is at most 100 characters")
        User = get_user_model()
        found = User.objects.filter(**{User.USERNAME_FIELD: user}).first()
        if found is None:
            raise CommandError(f"no user {user!r}: make one with `python manage.py createsuperuser`")
        if not (found.is_active and found.is_staff):
            raise CommandError(f"{user!r} is not active staff, and tokens act as staff users: tick 'Staff status' "
                               "(and 'Active') for them in the admin first")
        expires = timezone.now() + timedelta(days=days) if days else None
        row, token = ApiToken.issue(found, name=name, expires=expires)
        until = f"until {expires:%Y-%m-%d %H:%M} UTC" if expires else "with no expiry"
        self.stderr.write(f"API token {row.pk} for {user} ({name or 'no name'}), valid {until}. "
                          "It is shown only now: copy it.")
        self.stdout.write(token)
