"""The base layer: settings, errors, identifiers and URLs, which every other layer may import
and which import nothing of candlecast above them."""
