"""Running compiled specs: data, training, export, serving and pictures, one subpackage each."""
