"""The shared heatmap: the values it writes into the cells."""

import math

from myopia.report import heatmap, plt


def _texts(ax):
    return {(t.get_position(), t.get_text(), t.get_color()) for t in ax.texts}


def test_heatmap_writes_every_finite_value_with_readable_colour():
    fig, ax = plt.subplots()
    heatmap(ax, [[0.1, math.nan], [0.75, 1.0]], ["a", "b"], ["r0", "r1"], "t", vmin=0, vmax=1, values=7)
    assert _texts(ax) == {
        ((0, 0), "0.10", "white"),  # dark end of the colour map
        ((0, 1), "0.75", "black"),
        ((1, 1), "1.00", "black"),
    }
    assert all(t.get_fontsize() == 7 for t in ax.texts)
    plt.close(fig)


def test_heatmap_colour_threshold_follows_the_colour_range():
    fig, ax = plt.subplots()
    heatmap(ax, [[5.0, 8.0]], ["a", "b"], ["r"], "t", vmin=0, vmax=10, values=6)
    assert [t.get_color() for t in ax.texts] == ["white", "black"]  # 5 < 6 = 0.6 of the range, 8 is not
    plt.close(fig)


def test_heatmap_writes_no_values_by_default():
    fig, ax = plt.subplots()
    heatmap(ax, [[0.5]], ["a"], ["r"], "t")
    assert len(ax.texts) == 0
    plt.close(fig)
