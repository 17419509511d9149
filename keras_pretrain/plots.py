"""PNG plots where a picture says more than numbers."""

import matplotlib

matplotlib.use("Agg")  # files only; never needs a screen
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_loss_curve(losses, path, title="Pre-training loss"):
    """Line plot of per-epoch (or per-step) losses."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(np.arange(1, len(losses) + 1), losses, marker="o")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reconstructions(masked, reconstruction, original, path, count=8):
    """Grid with one row each of masked inputs, reconstructions and originals."""
    rows = {"masked": masked, "reconstruction": reconstruction, "original": original}
    count = min(count, len(original))
    fig, axes = plt.subplots(3, count, figsize=(1.3 * count, 4.2), squeeze=False)
    for r, (label, images) in enumerate(rows.items()):
        for c in range(count):
            image = np.clip(images[c], 0.0, 1.0)
            axes[r, c].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_accuracies(accuracies, path, title="Test accuracy"):
    """Bar chart of `{model: accuracy in [0, 1]}`."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = list(accuracies)
    values = [100 * accuracies[n] for n in names]
    bars = ax.bar(names, values, color=["#999999", "#d98c5f", "#4c8bd9", "#6fbf73", "#b57edc"][: len(names)])
    ax.bar_label(bars, fmt="%.1f")
    ax.set(ylabel="accuracy (%)", title=title, ylim=(0, 100))
    plt.setp(ax.get_xticklabels(), rotation=15, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_label_curve(curve, path, title="Label efficiency"):
    """Test accuracy against labels per class (log scale), mean and standard deviation over label draws.

    `curve` is `{encoder: {protocol: {labels_per_class: {"mean", "std"}}}}`, as
    `FewLabelEvaluation.label_curve` returns it.
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, protocols in curve.items():
        for protocol, points in protocols.items():
            sizes = sorted(points, key=int)
            x = np.array([int(k) for k in sizes])
            mean = np.array([100 * points[k]["mean"] for k in sizes])
            std = np.array([100 * points[k]["std"] for k in sizes])
            line, = ax.plot(x, mean, marker="o", label=f"{name}, {protocol}",
                            linestyle="--" if name == "baseline" else "-")
            ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    ax.set_xscale("log")
    ax.set(xlabel="labels per class", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
