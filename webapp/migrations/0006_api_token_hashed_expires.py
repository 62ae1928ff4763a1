import hashlib

from django.db import migrations, models


def hash_existing_keys(apps, schema_editor):
    """Tokens made before this migration were stored as they are: store their SHA-256, so they keep working."""
    ApiToken = apps.get_model("webapp", "ApiToken")
    for token in ApiToken.objects.all():
        token.key = hashlib.sha256(token.key.encode()).hexdigest()
        token.save(update_fields=["key"])


class Migration(migrations.Migration):

    dependencies = [
        ("webapp", "0005_live_text_vector"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires",
            field=models.DateTimeField(blank=True, help_text="empty: never", null=True),
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="key",
            field=models.CharField(max_length=64, unique=True, verbose_name="SHA-256 of the token"),
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="name",
            field=models.CharField(blank=True, help_text="what or who uses it, e.g. 'catalog feed'", max_length=100),
        ),
        migrations.AlterField(
            model_name="apitoken",
            name="user",
            field=models.ForeignKey(help_text="the token acts as this user, who must be active staff",
                                    on_delete=models.deletion.CASCADE, related_name="api_tokens",
                                    to="auth.user"),
        ),
        # Irreversible in substance: a hash cannot be turned back into the token (going back leaves the hashes).
        migrations.RunPython(hash_existing_keys, migrations.RunPython.noop),
    ]
