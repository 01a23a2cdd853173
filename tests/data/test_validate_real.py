"""The validator finds every anomaly that ../shared/data/README.md lists for the real files (ground truth
written by whoever assembled the data, independently of this code)."""
import pandas as pd, pytest
from quantsage.data.validate import validate
from quantsage.data.sources import read_bar_file
from quantsage.testing import shared_data

def shared_bars(name, tf, calendar=None):
    return read_bar_file(shared_data(name), tf, 'session' if calendar else 'open', calendar)

# README: "27 gaps / 122 missing hours (identical in the ETH file)": open time of the first missing bar, bars missing
OUTAGES = [('2018-01-04 04:00', 1), ('2018-02-08 01:00', 33), ('2018-06-26 02:00', 10), ('2018-06-27 13:00', 1), ('2018-07-04 01:00', 7),
           ('2018-10-19 06:00', 3), ('2018-11-14 02:00', 7), ('2019-03-12 02:00', 6), ('2019-05-15 03:00', 10), ('2019-08-15 02:00', 8),
           ('2019-11-13 02:00', 2), ('2019-11-25 02:00', 2), ('2020-02-09 02:00', 1), ('2020-02-19 12:00', 5), ('2020-03-04 10:00', 1),
           ('2020-04-25 02:00', 2), ('2020-06-28 02:00', 3), ('2020-11-30 06:00', 1), ('2020-12-21 14:00', 4), ('2020-12-25 02:00', 1),
           ('2021-02-11 04:00', 1), ('2021-03-06 02:00', 1), ('2021-04-20 02:00', 2), ('2021-04-25 05:00', 3), ('2021-08-13 02:00', 4),
           ('2021-09-29 07:00', 2), ('2023-03-24 13:00', 1)]
ZERO_VOLUME_OPEN = ['2019-06-07 21:00', '2021-02-11 03:00', '2023-03-24 12:00']

@pytest.mark.parametrize('name', ['binance_BTCUSDT_1h.csv', 'binance_ETHUSDT_1h.csv'])
def test_crypto_hourly_outages_and_halts(name):
    rep = validate(shared_bars(name, '1h'), '1h', symbol=name)
    assert rep.ok
    gap = rep['gap'].rows
    got = list(zip(pd.DatetimeIndex(gap.previous).tz_localize('UTC').strftime('%Y-%m-%d %H:%M'), gap.missing_bars))
    assert got == OUTAGES
    zv = rep['zero_volume'].rows.index - pd.Timedelta(hours=1)          # back to open times, as the README lists them
    assert list(zv.strftime('%Y-%m-%d %H:%M')) == ZERO_VOLUME_OPEN

@pytest.mark.parametrize('name', ['binance_BTCUSDT_1m.csv', 'binance_ETHUSDT_1m.csv'])
def test_crypto_minutes_are_complete(name):
    rep = validate(shared_bars(name, '1m'), '1m', symbol=name)
    assert rep.ok and rep.n_rows == 130708
    assert rep['gap'] is None and rep['zero_volume'] is None and rep['off_calendar'] is None

def test_eth_minute_selloff_moves_are_outliers():
    rep = validate(shared_bars('binance_ETHUSDT_1m.csv', '1m'), '1m', symbol='ETH/USDT')
    opens = set((rep['return_outlier'].rows.index - pd.Timedelta(minutes=1)).strftime('%Y-%m-%d %H:%M'))
    assert {'2025-06-21 21:24', '2025-06-21 21:31'} <= opens

SPLITS = {'AAPL': {'2000-06-21': '2:1', '2005-02-28': '2:1', '2014-06-09': '7:1', '2020-08-31': '4:1'},
          'AIG': {'1998-08-03': '1.5:1', '1999-08-02': '1.25:1', '2000-07-31': '1.5:1', '2009-07-01': '~1:17'},
          'BAC': {'2004-08-30': '2:1'}, 'IBM': {'1999-05-27': '2:1'}, 'IWM': {'2005-06-09': '2:1'},
          'MSFT': {'2003-02-18': '2:1'}, 'QQQ': {'2000-03-20': '2:1'}, 'SPY': {}}
BAD_PRINTS = {'SPY': ['2000-12-18', '2002-04-02', '2002-06-06', '2003-09-05', '1999-05-21', '2002-01-28', '2004-12-20', '2005-09-06'],
              'QQQ': ['2004-11-01', '2002-06-27', '2001-12-13'], 'IWM': ['2008-09-19'], 'IBM': ['2002-12-23'],
              'AAPL': ['2009-09-21', '2010-08-31', '2011-01-03'], 'BAC': ['1998-04-24', '2001-11-12', '2001-09-17'],
              'AIG': ['2009-05-05'], 'MSFT': ['2008-07-01']}

@pytest.mark.parametrize('ticker', sorted(SPLITS))
def test_us_raw_splits_bad_prints_and_wicks(ticker):
    rep = validate(shared_bars(f'us_{ticker}_1d_raw.csv', '1d', 'XNYS'), '1d', 'XNYS', symbol=ticker)
    assert rep.ok
    sp = rep['suspected_split']
    found = dict(zip(sp.rows.index.strftime('%Y-%m-%d'), sp.rows.ratio)) if sp else {}
    assert {d: found.get(d) for d in SPLITS[ticker]} == SPLITS[ticker]
    if ticker == 'SPY': assert found == {}                                # no false split on the file without splits
    bad = rep['bad_print'].rows
    assert set(BAD_PRINTS[ticker]) <= set(bad.index.strftime('%Y-%m-%d'))
    oc_hi, oc_lo = bad[['open', 'close']].max(axis=1), bad[['open', 'close']].min(axis=1)
    raw = shared_bars(f'us_{ticker}_1d_raw.csv', '1d', 'XNYS')
    wick = (raw.high/raw[['open', 'close']].max(axis=1) - 1 > .10) | (1 - raw.low/raw[['open', 'close']].min(axis=1) > .10)
    assert set(raw.index[wick]) <= set(bad.index)                        # every bar with a wick > 10% is flagged

def test_exchange_closures_are_not_gaps_but_the_qqq_ticker_change_hole_is():
    spy = validate(shared_bars('us_SPY_1d_raw.csv', '1d', 'XNYS'), '1d', 'XNYS', symbol='SPY')
    assert spy['gap'] is None and spy['off_calendar'] is None              # 9/11, 2007-01-02 and Sandy are calendar closures
    qqq = validate(shared_bars('us_QQQ_1d_raw.csv', '1d', 'XNYS'), '1d', 'XNYS', symbol='QQQ')
    hole = qqq['gap'].rows.sort_values('missing_bars').iloc[-1]
    assert (str(hole.first_missing.date()), hole.name.strftime('%Y-%m-%d')) == ('2004-12-01', '2011-03-23')
    assert hole.missing_bars > 1500

@pytest.mark.parametrize('ticker', ['AAPL', 'GLD', 'IWM', 'JPM', 'MSFT', 'QQQ', 'SPY', 'TLT', 'XLE'])
def test_us_adjusted_files_have_no_gaps_or_splits(ticker):
    rep = validate(shared_bars(f'us_{ticker}_1d_adj.csv', '1d', 'XNYS'), '1d', 'XNYS', symbol=ticker)
    assert rep.ok and rep.n_rows == 1638
    assert rep['gap'] is None and rep['off_calendar'] is None and rep['suspected_split'] is None
