"""The service layer: the seed's JobManager. Every user operation (submit, list, status,
show, result, export, cancel, delete, follow) is one method of
`qforge.service.manager.JobManager`; the local command line, the HTTP server and the
Python client are doors onto it (`qforge.service.door.Manager`). Nothing is imported here,
so that `qforge worker` starts without the commands' modules."""
