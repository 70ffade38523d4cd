"""candlecast: daily CDD candles into SQL, an LSTM forecast of the next closes, scored honestly."""

__version__ = "0.1.0"
