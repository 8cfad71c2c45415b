"""Training scripts (``camstream train``): the IDF ControlNet of Base; Light trains its adapters."""
