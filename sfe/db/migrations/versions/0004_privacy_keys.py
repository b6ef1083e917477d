"""The privacy key store: one wrapped data key per data subject, and the e-mail index.

Keys are per namespace (the topic prefix of an environment) and subject.
``privacy_subject_keys`` holds each subject's 32-byte data key wrapped (encrypted)
under the master key; erasing the subject sets ``wrapped_key`` to NULL and keeps the
row as a tombstone, so no new key is ever made for an erased subject.
``privacy_subject_emails`` maps keyed digests (HMAC-SHA256) of e-mail addresses to
their subjects, so a subject can be erased by address without storing one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the key and e-mail index tables."""
    op.create_table(
        "privacy_subject_keys",
        sa.Column("namespace", sa.String(100), primary_key=True),
        sa.Column("subject", sa.String(64), primary_key=True),
        sa.Column("wrapped_key", sa.LargeBinary),
        sa.Column("wrapped_by", sa.String(100), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("erased_at", sa.DateTime(timezone=True)),
        sa.Column("erasure_id", sa.String(64)),
        sa.CheckConstraint(
            "(wrapped_key IS NULL) = (erased_at IS NOT NULL)",
            name="privacy_subject_keys_erased_means_no_key",
        ),
    )
    op.create_table(
        "privacy_subject_emails",
        sa.Column("namespace", sa.String(100), nullable=False),
        sa.Column("digest", sa.LargeBinary, nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint(
            "namespace", "digest", "subject", name="privacy_subject_emails_pkey"
        ),
    )
    op.create_index(
        "privacy_subject_emails_subject", "privacy_subject_emails", ["namespace", "subject"]
    )


def downgrade() -> None:
    """Drop the key store (every sealed value becomes unreadable)."""
    op.drop_table("privacy_subject_emails")
    op.drop_table("privacy_subject_keys")
