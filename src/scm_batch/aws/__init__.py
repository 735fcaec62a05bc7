"""The AWS deployment: Lambda handlers, the Batch job entrypoint and the state machine generator.

They adapt the same stage functions the local run uses. The command line loads only the
``scm-batch aws`` commands and the generator; handlers and the job's stages load when a function
or a job runs.
"""
