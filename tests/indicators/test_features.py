"""Features are causal on real data, the pipeline does not leak, and walk-forward splits never let a training
label window reach the test slice (property-tested)."""
import numpy as np, pandas as pd
from hypothesis import given, settings, strategies as st
from quantsage.features import compute_features, FeaturePipeline, forward_return, triple_barrier, walk_forward_splits
from quantsage.data.sources import read_bar_file
from quantsage.testing import shared_data

def btc(n=4000):
    return read_bar_file(shared_data('binance_BTCUSDT_1h.csv'), '1h').iloc[:n]

def test_every_feature_is_causal_on_real_data():
    b = btc(); rng = np.random.default_rng(11)
    base = compute_features(b)
    for t in rng.integers(50, len(b) - 2, 5):
        changed = b.copy()
        changed.iloc[t+1:, :4] = changed.iloc[t+1:, :4].to_numpy()*rng.uniform(.5, 2, (len(b) - t - 1, 1))
        changed.iloc[t+1:, 4] = changed.iloc[t+1:, 4].to_numpy()*rng.uniform(0, 3, len(b) - t - 1)
        assert base.iloc[:t+1].equals(compute_features(changed).iloc[:t+1]), t

def test_pipeline_scales_with_training_statistics_only():
    b = btc()
    p = FeaturePipeline().fit(b.iloc[:2000])
    later = b.copy(); later.iloc[3000:, :4] *= 3.0
    assert p.transform(b).iloc[:3000].equals(p.transform(later).iloc[:3000])
    raw = compute_features(b.iloc[:2000]).dropna()
    assert np.allclose(p.transform(b.iloc[:2000]).dropna().mean(), 0, atol=1e-9)      # centred on the training slice
    assert not np.allclose(p.mean_, compute_features(b).dropna().mean())                # not on everything

def test_triple_barrier_on_real_data_matches_a_direct_scan():
    b = btc(600); h, tp, sl = 12, .01, .01
    got = triple_barrier(b, h, tp, sl)
    c, hi, lo = b.close.to_numpy(), b.high.to_numpy(), b.low.to_numpy()
    for i in range(len(b) - h):
        want = 0.
        for k in range(1, h + 1):
            if lo[i+k] <= c[i]*(1 - sl): want = -1.; break
            if hi[i+k] >= c[i]*(1 + tp): want = 1.; break
        assert got.label.iloc[i] == want, i

@settings(max_examples=200, deadline=None)
@given(st.integers(50, 400), st.integers(5, 100), st.integers(5, 80), st.integers(1, 30), st.integers(0, 10), st.booleans())
def test_splits_never_overlap_label_windows(n, train, test, horizon, embargo, expanding):
    idx = pd.date_range('2024-01-01', periods=n, freq='1h', tz='UTC')
    t1 = forward_return(pd.Series(np.linspace(1, 2, n), index=idx), horizon).t1
    for tr, te in walk_forward_splits(idx, train, test, expanding=expanding, embargo=embargo, t1=t1):
        assert len(te) == test and te[0] >= train
        if len(tr):
            assert t1.iloc[tr].max() < idx[max(te[0] - embargo, 0)] <= idx[te[0]]
            assert tr.max() < te.min()

@settings(max_examples=200, deadline=None)
@given(st.integers(50, 400), st.integers(5, 100), st.integers(5, 80), st.integers(1, 30), st.integers(0, 10), st.booleans())
def test_splits_by_purge_count_never_overlap_label_windows(n, train, test, horizon, embargo, expanding):
    "The path without t1: purge=horizon drops exactly the rows whose h-bar label reaches the test slice."
    idx = pd.date_range('2024-01-01', periods=n, freq='1h', tz='UTC')
    for tr, te in walk_forward_splits(idx, train, test, expanding=expanding, embargo=embargo, purge=horizon):
        if len(tr):
            assert tr.max() + horizon < te[0] - embargo                     # the label of the last training row ends before the embargo
