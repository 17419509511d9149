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
