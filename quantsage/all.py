"The curated import surface for notebooks: `from quantsage.all import *`. Hand-written; keep it short."
from .core import QuantSageError, ConfigError, DataError, StorageError, UTC, as_utc, utc_now, new_client_order_id
from .events import *
from .bus import EventBus, AsyncEventBus
from .config import load_config, secret, Secret
from .data.bars import check_bars, timeframe_delta, open_to_close
from .data.store import Store
from .data.samples import SAMPLES, sample_bars, load_samples
