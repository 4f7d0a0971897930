"""The game's landscape: gradients, Jacobians and Hessians of the two-player loss."""
