"""Serving: how a request travels from a front end (the CLI, the demo) to a pipeline and back.

    settings = GenerationSettings.create(...)          # validated once (glide.settings)
    job = Job(Generate(settings), session=user)        # jobs: a typed payload + a progress stream
    backend = create_backend(BackendOptions(...))      # backend: one protocol, two executors
    backend.submit(job)                                #   local: worker threads here (local.py)
    for progress in job.stream(): ...                  #   ray: a Ray Serve application (ray_serve.py)
    result = job.outcome()                             # batches: what a run computes (batches.py)

Modules: `jobs` (payloads, Job, Progress), `fair_queue` (round-robin across users, bounds),
`backend` (the Backend protocol, the shared queueing, `create_backend`), `local`, `ray_serve`,
`batches` (a batch of payloads on a loaded pipeline, shared by both executors) and `options`
(the flags, importable without torch or Ray). Import from the modules themselves.
"""
