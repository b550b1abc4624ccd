"""`qforge server`: the HTTP front door (FastAPI on uvicorn) over the job store. Routes
are thin: each authenticates, then calls the service layer (qforge.service)."""
