"""The suites `scripts/` runs, as one list each: scripts/mnist_suite.sh reads its studies from
here, and the report's budget table sums their wall time."""

# mnist_mlp (10k steps) is not in the MNIST suite: ioffe_fig1 answers its accuracy and speed
# claims at the paper's budget, and noisy_bn_mnist's no-BN and BN arms are its runs, made again.
MNIST_SUITE = ("ioffe_fig1", "lr_mnist", "init_mnist", "dropout_pilot_mnist", "dropout_mnist", "noisy_bn_mnist")
SUITES = {"MNIST suite (`scripts/mnist_suite.sh`)": MNIST_SUITE}
