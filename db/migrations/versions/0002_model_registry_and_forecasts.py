"""model registry and forecasts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 04:07:15.809027

"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    _tables()
    for name, sql in _views(op.get_bind().dialect.name).items():
        op.execute(f"CREATE VIEW {name} AS {sql}")


def _tables() -> None:
    op.create_table('model_series',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('last_version', sa.Integer(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('champion_id', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_series')),
    sa.UniqueConstraint('exchange', 'symbol', 'timeframe', name=op.f('uq_model_series_exchange_symbol_timeframe'))
    )
    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('preset', sa.String(length=64), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('scaler', sa.JSON(), nullable=False),
    sa.Column('details', sa.JSON(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('train_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('train_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('train_rows', sa.Integer(), nullable=True),
    sa.Column('data_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('test_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('test_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('test_mape', sa.Float(precision=53), nullable=True),
    sa.Column('test_persistence_mape', sa.Float(precision=53), nullable=True),
    sa.Column('test_skill', sa.Float(precision=53), nullable=True),
    sa.Column('champion_mape_same_window', sa.Float(precision=53), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('decision', sa.Text(), nullable=False),
    sa.Column('ingest_run_id', sa.Integer(), nullable=True),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('libraries', sa.JSON(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('pruned_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['ingest_run_id'], ['ingest_runs.id'], name=op.f('fk_model_versions_ingest_run_id_ingest_runs')),
    sa.ForeignKeyConstraint(['parent_id'], ['model_versions.id'], name=op.f('fk_model_versions_parent_id_model_versions')),
    sa.ForeignKeyConstraint(['series_id'], ['model_series.id'], name=op.f('fk_model_versions_series_id_model_series')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('series_id', 'version', name=op.f('uq_model_versions_series_id_version'))
    )
    op.create_table('champion_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('series_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
    sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['series_id'], ['model_series.id'], name=op.f('fk_champion_changes_series_id_model_series')),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_champion_changes_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_champion_changes'))
    )
    with op.batch_alter_table('champion_changes', schema=None) as batch_op:
        batch_op.create_index('ix_champion_changes_series', ['series_id', 'valid_from'], unique=False)

    op.create_table('forecasts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('exchange', sa.String(length=32), nullable=False),
    sa.Column('symbol', sa.String(length=32), nullable=False),
    sa.Column('timeframe', sa.String(length=8), nullable=False),
    sa.Column('as_of', sa.DateTime(timezone=True), nullable=False),
    sa.Column('target_time', sa.DateTime(timezone=True), nullable=False),
    sa.Column('horizon', sa.Integer(), nullable=False),
    sa.Column('predicted_close', sa.Float(precision=53), nullable=False),
    sa.Column('persistence_close', sa.Float(precision=53), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('flow_run_id', sa.String(length=64), nullable=True),
    sa.Column('realized_close', sa.Float(precision=53), nullable=True),
    sa.Column('model_ape_pct', sa.Float(precision=53), nullable=True),
    sa.Column('persistence_ape_pct', sa.Float(precision=53), nullable=True),
    sa.Column('scored_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_forecasts_version_id_model_versions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_forecasts')),
    sa.UniqueConstraint('version_id', 'as_of', 'horizon', name=op.f('uq_forecasts_version_id_as_of_horizon'))
    )
    with op.batch_alter_table('forecasts', schema=None) as batch_op:
        batch_op.create_index('ix_forecasts_series_target', ['exchange', 'symbol', 'timeframe', 'target_time'], unique=False)

    with op.batch_alter_table('model_series', schema=None) as batch_op:
        batch_op.create_foreign_key(
            'fk_model_series_champion_id', 'model_versions', ['champion_id'], ['id']
        )

    op.create_table('model_blobs',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_blobs_version_id_model_versions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('version_id', name=op.f('pk_model_blobs'))
    )


def downgrade() -> None:
    """Downgrade schema."""
    for name in reversed(list(_views(op.get_bind().dialect.name))):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    op.drop_table('model_blobs')
    with op.batch_alter_table('forecasts', schema=None) as batch_op:
        batch_op.drop_index('ix_forecasts_series_target')

    op.drop_table('forecasts')
    with op.batch_alter_table('champion_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_champion_changes_series')

    op.drop_table('champion_changes')
    with op.batch_alter_table('model_series', schema=None) as batch_op:
        batch_op.drop_constraint('fk_model_series_champion_id', type_='foreignkey')
    op.drop_table('model_versions')
    op.drop_table('model_series')


def _views(dialect: str) -> dict[str, str]:
    """The SQL views, identical rows on SQLite and PostgreSQL (only date arithmetic differs)."""
    if dialect == "sqlite":
        in_window = "julianday(s.target_time) > julianday(l.newest) - w.days"
    else:
        in_window = "s.target_time > l.newest - w.days * INTERVAL '1 day'"
    return {
        "latest_forecasts": """
            SELECT f.exchange, f.symbol, f.timeframe, v.version, f.as_of, f.horizon,
                   f.target_time, f.predicted_close, f.persistence_close,
                   f.created_at, f.flow_run_id
            FROM forecasts f
            JOIN model_series ms ON ms.champion_id = f.version_id
            JOIN model_versions v ON v.id = f.version_id
            WHERE f.as_of = (SELECT MAX(f2.as_of) FROM forecasts f2
                             WHERE f2.version_id = f.version_id)""",
        "forecast_accuracy": f"""
            WITH scored AS (
                SELECT f.exchange, f.symbol, f.timeframe, v.version, f.horizon, f.target_time,
                       f.model_ape_pct, f.persistence_ape_pct
                FROM forecasts f JOIN model_versions v ON v.id = f.version_id
                WHERE f.realized_close IS NOT NULL),
            latest AS (
                SELECT exchange, symbol, timeframe, MAX(target_time) AS newest
                FROM scored GROUP BY exchange, symbol, timeframe),
            windows AS (SELECT 7 AS days UNION ALL SELECT 30 UNION ALL SELECT 90)
            SELECT s.exchange, s.symbol, s.timeframe, s.version, s.horizon,
                   w.days AS window_days, COUNT(*) AS n_scored,
                   AVG(s.model_ape_pct) AS model_mape_pct,
                   AVG(s.persistence_ape_pct) AS persistence_mape_pct
            FROM scored s
            JOIN latest l ON l.exchange = s.exchange AND l.symbol = s.symbol
                         AND l.timeframe = s.timeframe
            CROSS JOIN windows w
            WHERE {in_window}
            GROUP BY s.exchange, s.symbol, s.timeframe, s.version, s.horizon, w.days""",
        "model_leaderboard": """
            SELECT v.exchange, v.symbol, v.timeframe, v.version, v.kind,
                   p.version AS parent_version, v.preset, v.created_at, v.status,
                   CASE WHEN ms.champion_id = v.id THEN 1 ELSE 0 END AS is_champion,
                   v.test_mape, v.test_persistence_mape, v.test_skill,
                   v.test_start, v.test_end, v.train_rows, v.decision
            FROM model_versions v
            JOIN model_series ms ON ms.id = v.series_id
            LEFT JOIN model_versions p ON p.id = v.parent_id""",
        "champion_history": """
            SELECT ms.exchange, ms.symbol, ms.timeframe, v.version, c.valid_from, c.valid_to,
                   c.reason
            FROM champion_changes c
            JOIN model_series ms ON ms.id = c.series_id
            JOIN model_versions v ON v.id = c.version_id""",
        "series_status": """
            SELECT ms.exchange, ms.symbol, ms.timeframe, ms.last_version,
                   v.version AS champion_version, v.test_mape AS champion_test_mape,
                   v.test_persistence_mape AS champion_persistence_mape, ms.note
            FROM model_series ms
            LEFT JOIN model_versions v ON v.id = ms.champion_id""",
    }
