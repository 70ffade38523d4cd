"""served twins' networks, each version's band scores in model_leaderboard

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:00:00

A version that serves keeps, beside the networks the gate scored, their twin refitted on every
candle, which forecasts: its point and band networks in ``model_blobs.served`` and
``served_bands``, the point network's sha256 in ``model_versions.served_sha256`` (NULL: no
twin). The evaluation twin's h=1 band scores on its test window get columns of their own, so
``model_leaderboard`` shows them beside the MAPE.
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SCORES = ('test_cov80', 'test_cov95', 'test_winkler95')  # h = 1, in %

# With {bands} and {served} empty, this is 0002's view.
_LEADERBOARD = """
    SELECT v.exchange, v.symbol, v.timeframe, v.version, v.kind,
           p.version AS parent_version, v.preset, v.created_at, v.status,
           CASE WHEN ms.champion_id = v.id THEN 1 ELSE 0 END AS is_champion,
           v.test_mape, v.test_persistence_mape, v.test_skill{bands},
           v.test_start, v.test_end, v.train_rows, v.decision{served}
    FROM model_versions v
    JOIN model_series ms ON ms.id = v.series_id
    LEFT JOIN model_versions p ON p.id = v.parent_id"""


def upgrade() -> None:
    """Upgrade schema."""
    op.execute('DROP VIEW IF EXISTS model_leaderboard')
    op.add_column('model_blobs', sa.Column('served', sa.LargeBinary(), nullable=True))
    op.add_column('model_blobs', sa.Column('served_bands', sa.LargeBinary(), nullable=True))
    op.add_column('model_versions', sa.Column('served_sha256', sa.String(64), nullable=True))
    for column in _SCORES:
        op.add_column('model_versions', sa.Column(column, sa.Float(precision=53), nullable=True))
    bands = ''.join(f', v.{column}' for column in _SCORES)
    served = ',\n           CASE WHEN v.served_sha256 IS NULL THEN 0 ELSE 1 END AS served'
    op.execute(f'CREATE VIEW model_leaderboard AS {_LEADERBOARD.format(bands=bands, served=served)}')


def downgrade() -> None:
    """Downgrade schema."""
    op.execute('DROP VIEW IF EXISTS model_leaderboard')
    for column in reversed(_SCORES):
        op.drop_column('model_versions', column)
    op.drop_column('model_versions', 'served_sha256')
    op.drop_column('model_blobs', 'served_bands')
    op.drop_column('model_blobs', 'served')
    op.execute(f'CREATE VIEW model_leaderboard AS {_LEADERBOARD.format(bands="", served="")}')
