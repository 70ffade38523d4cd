"""candles and ingest runs

Revision ID: 0001
Revises:
Create Date: 2026-11-26 03:57:09.662268

"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('ingest_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('http_status', sa.Integer(), nullable=True),
    sa.Column('sha256', sa.String(length=64), nullable=True),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('rows_parsed', sa.Integer(), nullable=True),
    sa.Column('inserted', sa.Integer(), nullable=True),
    sa.Column('updated', sa.Integer(), nullable=True),
    sa.Column('unchanged', sa.Integer(), nullable=True),
    sa.Column('first_candle', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_candle', sa.DateTime(timezone=True), nullable=True),
    sa.Column('missing_count', sa.Integer(), nullable=True),
    sa.Column('warnings', sa.JSON(), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ingest_runs'))
    )
    with op.batch_alter_table('ingest_runs', schema=None) as batch_op:
        batch_op.create_index('ix_ingest_runs_lookup', ['exchange', 'symbol', 'timeframe', 'started_at'], unique=False)

    op.create_table('candles',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('open_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('open', sa.Float(precision=53), nullable=False),
    sa.Column('high', sa.Float(precision=53), nullable=False),
    sa.Column('low', sa.Float(precision=53), nullable=False),
    sa.Column('close', sa.Float(precision=53), nullable=False),
    sa.Column('volume_base', sa.Float(precision=53), nullable=False),
    sa.Column('volume_quote', sa.Float(precision=53), nullable=False),
    sa.Column('trade_count', sa.BigInteger(), nullable=True),
    sa.Column('ingest_run_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['ingest_run_id'], ['ingest_runs.id'], name=op.f('fk_candles_ingest_run_id_ingest_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_candles')),
    sa.UniqueConstraint('exchange', 'symbol', 'timeframe', 'open_time', name=op.f('uq_candles_exchange_symbol_timeframe_open_time'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_table('candles')
    with op.batch_alter_table('ingest_runs', schema=None) as batch_op:
        batch_op.drop_index('ix_ingest_runs_lookup')

    op.drop_table('ingest_runs')
