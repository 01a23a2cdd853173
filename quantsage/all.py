"The curated import surface for notebooks: `from quantsage.all import *`. Hand-written; keep it short."
from .core import QuantSageError, ConfigError, DataError, StorageError, UTC, as_utc, utc_now, new_client_order_id
from .events import *
from .bus import EventBus, AsyncEventBus
from .config import load_config, secret, Secret
from .data.bars import check_bars, timeframe_delta, open_to_close
from .data.store import Store
from .data.samples import SAMPLES, sample_bars, load_samples
from .data.validate import validate, clean
from .data.sources import FileSource, read_bar_file
from .data.catalog import load_bars, open_source
from .data.ingest import ingest, import_file, collect
from . import indicators
from .features import FeaturePipeline, FeatureState, compute_features, forward_return, forward_sign, triple_barrier, walk_forward_splits
from .strategies import Strategy, STRATEGIES, register, get_strategy, SmaCross, MeanReversion, Momentum, XGBoostStrategy
from .portfolio import Portfolio, FixedQuantity, PercentOfEquity, Instrument
from .risk import RiskManager, RiskCheck, Limit, TradingState, Breakers
from .exits import ExitRules
from .sizing import RiskBased, AtrSized, Kelly
from .limits import MaxPositionPct, MaxSymbolExposure, MaxInvested, CorrelationLimit, risk_from_config
from .execution.costs import CostModel, BpsCommission, PerShareCommission, FixedBps, Spread, VolumeImpact
from .engine.backtest import backtest, BacktestResult, check_no_lookahead, LookAheadError
from .engine.sweep import sweep, SweepResult, param_grid, param_random
from .engine.walkforward import walk_forward, WalkForwardResult
from .engine.regimes import regime_labels, regime_metrics
from .engine.metrics import criteria, periods_per_year
from .engine.validation import validate_strategy, ValidationReport, preset_options
