"""quarantined rows, optional quote volume, imputed forecast inputs

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 12:50:00

A bad row in a CDD file is kept in ``rejected_candles`` with its raw values instead of
rejecting the whole file; files with a single ``Volume`` column have no quote volume; a
forecast row says how many of its input candles were imputed across a short gap.
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LATEST_FORECASTS = """
    SELECT f.exchange, f.symbol, f.timeframe, v.version, f.as_of, f.horizon,
           f.target_time, f.predicted_close, f.persistence_close,
           f.created_at, f.flow_run_id{extra}
    FROM forecasts f
    JOIN model_series ms ON ms.champion_id = f.version_id
    JOIN model_versions v ON v.id = f.version_id
    WHERE f.as_of = (SELECT MAX(f2.as_of) FROM forecasts f2
                     WHERE f2.version_id = f.version_id)"""


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('rejected_candles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ingest_run_id', sa.Integer(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('open_time', sa.DateTime(timezone=True), nullable=True),
    sa.Column('row_number', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('raw', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['ingest_run_id'], ['ingest_runs.id'], name=op.f('fk_rejected_candles_ingest_run_id_ingest_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rejected_candles'))
    )
    with op.batch_alter_table('rejected_candles', schema=None) as batch_op:
        batch_op.create_index('ix_rejected_candles_series', ['exchange', 'symbol', 'timeframe', 'open_time'], unique=False)
    with op.batch_alter_table('candles', schema=None) as batch_op:
        batch_op.alter_column('volume_quote', existing_type=sa.Float(precision=53), nullable=True)
    op.execute("DROP VIEW IF EXISTS latest_forecasts")
    op.add_column('forecasts', sa.Column('imputed_inputs', sa.Integer(), nullable=False, server_default='0'))
    op.execute("CREATE VIEW latest_forecasts AS " + _LATEST_FORECASTS.format(extra=", f.imputed_inputs"))


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("DROP VIEW IF EXISTS latest_forecasts")
    op.drop_column('forecasts', 'imputed_inputs')  # in place: views read forecasts
    op.execute("CREATE VIEW latest_forecasts AS " + _LATEST_FORECASTS.format(extra=""))
    op.execute("DELETE FROM candles WHERE volume_quote IS NULL")
    with op.batch_alter_table('candles', schema=None) as batch_op:
        batch_op.alter_column('volume_quote', existing_type=sa.Float(precision=53), nullable=False)
    with op.batch_alter_table('rejected_candles', schema=None) as batch_op:
        batch_op.drop_index('ix_rejected_candles_series')
    op.drop_table('rejected_candles')
