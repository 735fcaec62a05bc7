"""The AWS deployment: Lambda handlers, the Batch job entrypoint and the state machine generator.

Nothing here is imported by the local run; the stage functions it adapts are the same.
"""
