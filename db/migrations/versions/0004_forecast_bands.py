"""forecast bands, the band network's bytes, band scores in forecast_accuracy

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-18 09:30:00

A forecast row carries the model's 80% and 95% band edges beside its median and the naive
band's beside persistence; a version's band network is stored beside its point network;
forecast_accuracy scores both bands (coverage, Winkler) on the same rows. The views read
``forecasts``, so they are dropped before it changes and created again after.
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa


revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_EDGES = ('low95', 'low80', 'high80', 'high95')  # quantiles 0.025, 0.10, 0.90, 0.975
_BANDS = {'model': '', 'naive': 'naive_'}  # name in forecast_accuracy: prefix in forecasts
_COLUMNS = [prefix + edge for prefix in _BANDS.values() for edge in _EDGES]

# With every {placeholder} but in_window empty, these are 0003's views word for word.
_LATEST_FORECASTS = """
    SELECT f.exchange, f.symbol, f.timeframe, v.version, f.as_of, f.horizon,
           f.target_time, f.predicted_close{model_band}, f.persistence_close{naive_band},
           f.created_at, f.flow_run_id, f.imputed_inputs
    FROM forecasts f
    JOIN model_series ms ON ms.champion_id = f.version_id
    JOIN model_versions v ON v.id = f.version_id
    WHERE f.as_of = (SELECT MAX(f2.as_of) FROM forecasts f2
                     WHERE f2.version_id = f.version_id)"""

_FORECAST_ACCURACY = """
    WITH scored AS (
        SELECT f.exchange, f.symbol, f.timeframe, v.version, f.horizon, f.target_time,
               f.model_ape_pct, f.persistence_ape_pct{bands}
        FROM forecasts f JOIN model_versions v ON v.id = f.version_id
        WHERE f.realized_close IS NOT NULL),
    latest AS (
        SELECT exchange, symbol, timeframe, MAX(target_time) AS newest
        FROM scored GROUP BY exchange, symbol, timeframe),
    windows AS (SELECT 7 AS days UNION ALL SELECT 30 UNION ALL SELECT 90)
    SELECT s.exchange, s.symbol, s.timeframe, s.version, s.horizon,
           w.days AS window_days, COUNT(*) AS n_scored,
           AVG(s.model_ape_pct) AS model_mape_pct,
           AVG(s.persistence_ape_pct) AS persistence_mape_pct{scores}
    FROM scored s
    JOIN latest l ON l.exchange = s.exchange AND l.symbol = s.symbol
                 AND l.timeframe = s.timeframe
    CROSS JOIN windows w
    WHERE {in_window}
    GROUP BY s.exchange, s.symbol, s.timeframe, s.version, s.horizon, w.days"""


def upgrade() -> None:
    """Upgrade schema."""
    _drop_views()
    for column in _COLUMNS:
        op.add_column('forecasts', sa.Column(column, sa.Float(precision=53), nullable=True))
    op.add_column('model_blobs', sa.Column('bands', sa.LargeBinary(), nullable=True))
    _create_views(bands=True)


def downgrade() -> None:
    """Downgrade schema."""
    _drop_views()
    op.drop_column('model_blobs', 'bands')
    for column in reversed(_COLUMNS):
        op.drop_column('forecasts', column)  # in place: no table copy under SQLite's views
    _create_views(bands=False)


def _drop_views() -> None:
    for name in ('latest_forecasts', 'forecast_accuracy'):
        op.execute(f'DROP VIEW IF EXISTS {name}')


def _create_views(bands: bool) -> None:
    """The two views that read forecasts: with the bands, or as 0003 left them."""
    if op.get_bind().dialect.name == 'sqlite':
        in_window = 'julianday(s.target_time) > julianday(l.newest) - w.days'
    else:
        in_window = "s.target_time > l.newest - w.days * INTERVAL '1 day'"
    model_band, naive_band = (
        ''.join(f', f.{prefix}{edge}' for edge in _EDGES) if bands else ''
        for prefix in _BANDS.values())
    banded = ' AND '.join(f'f.{column} IS NOT NULL' for column in _COLUMNS)
    scored = (f', f.realized_close{model_band}{naive_band},'
              f'\n               CASE WHEN {banded} THEN 1 ELSE 0 END AS banded')
    scores = ',\n           SUM(s.banded) AS n_banded' + ''.join(
        _band_scores(name, prefix) for name, prefix in _BANDS.items())
    views = {
        'latest_forecasts': _LATEST_FORECASTS.format(model_band=model_band, naive_band=naive_band),
        'forecast_accuracy': _FORECAST_ACCURACY.format(
            bands=scored if bands else '', scores=scores if bands else '', in_window=in_window),
    }
    for name, sql in views.items():
        op.execute(f'CREATE VIEW {name} AS {sql}')


def _band_scores(name: str, prefix: str) -> str:
    """One band's coverage of its 80% and 95% edges and its 95% Winkler score, in percent, as
    tasks/intervals.py's coverage and winkler compute them (alpha = 0.05: 2 / alpha = 40), on
    the banded rows only: a CASE without ELSE is NULL there, which AVG skips. The CAST keeps
    coverage a double on PostgreSQL, where the AVG of integers is numeric."""
    y = 's.realized_close'
    low95, low80, high80, high95 = (f's.{prefix}{edge}' for edge in _EDGES)

    def covered(low: str, high: str) -> str:
        hit = f'CASE WHEN {y} BETWEEN {low} AND {high} THEN 1 ELSE 0 END'
        return f'100 * AVG(CASE WHEN s.banded = 1 THEN CAST({hit} AS DOUBLE PRECISION) END)'

    winkler = (f'({high95} - {low95}'
               f' + 40 * CASE WHEN {y} < {low95} THEN {low95} - {y} ELSE 0 END'
               f' + 40 * CASE WHEN {y} > {high95} THEN {y} - {high95} ELSE 0 END) / {y}')
    return (f',\n           {covered(low80, high80)} AS {name}_cov80_pct'
            f',\n           {covered(low95, high95)} AS {name}_cov95_pct'
            f',\n           100 * AVG(CASE WHEN s.banded = 1 THEN {winkler} END)'
            f' AS {name}_winkler95_pct')
