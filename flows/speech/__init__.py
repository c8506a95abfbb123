"""The speech API (`narrator serve`): app.py, the routes; stream.py, the pipeline behind them."""
