"""Where a run's inputs are converted: this machine (`pipeline.convert`, the default) or the
workers of a Dask cluster (`pipeline.executors.dask`)."""
