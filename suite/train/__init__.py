"""Training methods: the step loop of each (backprop now; forward gradient next), the losses,
optimizers and learning-rate schedules the specs name."""
