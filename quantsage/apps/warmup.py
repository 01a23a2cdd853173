"""Hand-written (not exported): `panel serve --setup` runs this once when the dashboard server starts, so the first
session does not pay for importing QuantSage, HoloViews and Bokeh."""
import quantsage.apps.dashboard  # noqa: F401
