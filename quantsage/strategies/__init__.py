"Strategies: the contract and registry (`base`) and the built-in strategies, registered on import. Hand-written."
from .base import Strategy, MarketView, STRATEGIES, register, get_strategy, make_strategy
from .sma_cross import SmaCross
from .mean_reversion import MeanReversion
from .momentum import Momentum
from .xgboost import XGBoostStrategy
