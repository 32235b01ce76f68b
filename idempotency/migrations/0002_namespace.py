from django.db import migrations, models


class Migration(migrations.Migration):
    """Idempotency-Keys are unique per caller (namespace), no longer alone.

    Rows stored before this have no known caller: they get the legacy namespace
    (""), in which nobody claims a key; each is replayed only to the very request
    it was made for (its fingerprint covers the credential) until it expires.
    """

    dependencies = [
        ("idempotency", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencyrecord",
            name="namespace",
            field=models.CharField(default="", editable=False, max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="idempotencyrecord",
            name="key_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="idempotencyrecord",
            constraint=models.UniqueConstraint(
                fields=("namespace", "key_hash"), name="idempotency_namespace_key_uniq"
            ),
        ),
    ]
