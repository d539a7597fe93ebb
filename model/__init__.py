"""The order-flow model: tokens, network, training, serving, evaluation (torch)."""
