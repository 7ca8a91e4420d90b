"""The suites `scripts/suite.sh` runs, as one list each: the script reads its studies from
here, and the report's budget table sums their wall time."""

# mnist_mlp (10k steps) holds two of the pre-registered hypotheses (ICS in Ioffe's sense, the
# primary; Def. 2.1 ICS at the matched lr 0.5, a mechanism); ioffe_fig1 answers the accuracy and
# speed claims at the paper's budget, and noisy_bn_mnist's no-BN and BN arms are mnist_mlp's
# runs, made again. dropout_mnist (the 100-unit MLP) is not in the suite: there dropout does not
# help the no-BN net once its rate is tuned, so it cannot test the dropout claim;
# dropout_wide_mnist (256 units), where dropout does help, is the suite's dropout study. It stays
# in the report. cost_mnist and cost_cifar time the two arms side by side (the cost family).
# activations_mnist measures the seed's own descriptions of BN (family D); placement_mnist puts BN
# at the first or last hidden layer only (exploratory), read beside mnist_mlp.
MNIST_SUITE = ("ioffe_fig1", "mnist_mlp", "lr_mnist", "init_mnist", "dropout_pilot_mnist", "dropout_wide_mnist",
               "noisy_bn_mnist", "cost_mnist", "activations_mnist", "placement_mnist")
# cifar_cnn_cpu (a LeNet-like CNN on a 10,000-image subset) is not in the CIFAR-10 suite: the
# VGG-11 studies answer its claims on the whole training split, on the paper's architecture.
CIFAR_SUITE = ("santurkar", "resnet20", "lr_cifar", "init_cifar", "dropout_cifar", "cost_cifar")
SUITES = {"MNIST suite (`scripts/mnist_suite.sh`)": MNIST_SUITE,
          "CIFAR-10 suite, cpu profile (`scripts/cifar_suite.sh`)": CIFAR_SUITE}
_BY_NAME = {"mnist": MNIST_SUITE, "cifar": CIFAR_SUITE}


def suite_budgets(budgets: dict[str, dict]) -> list[dict]:
    """Per suite, from the studies' budgets (bnlab.analysis.frames.budget) of those that ran:
    the studies it holds, their summed wall clock and run time (hours), and those not run yet."""
    out = []
    for title, names in SUITES.items():
        have = [n for n in names if n in budgets]
        if have:
            out.append({"title": title, "studies": have, "missing": [n for n in names if n not in budgets],
                        "wall_hours": sum(budgets[n]["wall_hours"] for n in have),
                        "run_hours": sum(budgets[n]["run_hours"] for n in have)})
    return out


def studies_of(name: str) -> tuple[str, ...]:
    """A suite's studies by its short name (mnist, cifar); an unknown name is a one-line error."""
    if name not in _BY_NAME:
        raise SystemExit(f"suite: got {name!r}; allowed: {', '.join(_BY_NAME)}")
    return _BY_NAME[name]
