"""The audit trail: the hash-chained, append-only audit_log, its head and its anchor.

Triggers make the trail append-only for ordinary use: an UPDATE of an entry always
fails, a DELETE fails unless the transaction set ``sfe.audit_prune = 'on'`` (only
``sfe.audit.prune`` does), TRUNCATE always fails. The head may only advance by one to
an entry that exists with that hash, and cannot be deleted; the anchor changes only
under the prune setting. The table owner can still disable triggers: ``sfe audit
verify`` is what detects tampering (see sfe/audit.py).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64

STATEMENTS = """
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('sfe.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
--
CREATE FUNCTION audit_head_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.id = OLD.id AND NEW.seq = OLD.seq + 1 AND EXISTS (
            SELECT 1 FROM audit_log WHERE seq = NEW.seq AND hash = NEW.hash
        ) THEN
            RETURN NEW;
        END IF;
        RAISE EXCEPTION 'audit_head only advances to the entry appended after it'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION 'audit_head: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
--
CREATE FUNCTION audit_anchor_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'TRUNCATE' AND current_setting('sfe.audit_prune', true) = 'on' THEN
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END IF;
    RAISE EXCEPTION 'audit_anchor changes only when the trail is pruned: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
--
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_guard();
--
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_guard();
--
CREATE TRIGGER audit_head_advance_only BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_guard();
--
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_head_guard();
--
CREATE TRIGGER audit_anchor_prune_only BEFORE INSERT OR UPDATE OR DELETE ON audit_anchor
    FOR EACH ROW EXECUTE FUNCTION audit_anchor_guard();
--
CREATE TRIGGER audit_anchor_no_truncate BEFORE TRUNCATE ON audit_anchor
    FOR EACH STATEMENT EXECUTE FUNCTION audit_anchor_guard();
"""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("details", JSONB(none_as_null=False), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.create_table(
        "audit_head",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("id = 1", name="audit_head_one_row"),
    )
    op.create_table(
        "audit_anchor",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="audit_anchor_one_row"),
    )
    op.execute(f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS_HASH}')")
    for statement in STATEMENTS.split("\n--\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    # Dropping the tables drops their triggers; the trail goes with them.
    op.drop_table("audit_anchor")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION audit_anchor_guard()")
    op.execute("DROP FUNCTION audit_head_guard()")
    op.execute("DROP FUNCTION audit_log_guard()")
