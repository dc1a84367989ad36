"""Serving: how a request travels from a front end (the CLI, the demo) to a pipeline and back.

    settings = GenerationSettings.create(...)          # validated once (glide.settings)
    job = Job(Generate(settings), session=user)        # jobs: a typed payload + a progress stream
    backend = create_backend(BackendOptions(...))      # backend: one protocol, two executors
    backend.submit(job)                                #   local: worker threads here (local.py)
    for progress in job.stream(): ...                  #   ray: a Ray Serve application (ray_serve.py)
    result = job.outcome()                             # batches: what a run computes (batches.py)

Modules, each importing only those listed before it (tests/test_imports.py keeps it so):

    results      what a job gives back (Images, Compared); with glide.errors, the bottom
    options      the flags and ServeConfig, importable without torch or Ray
    jobs         payloads, Job, Progress
    metrics      Prometheus counters, fed by the backends; fair_queue: round-robin across users, bounds
    batches      a batch of payloads on a loaded pipeline, shared by both executors
    base         the Backend protocol and the queueing both backends share
    local        worker threads in this process; ray_serve: a Ray Serve application
    backend      on top, what front ends use: BackendOptions, create_backend (and the Backend protocol)

Import from the modules themselves.
"""
