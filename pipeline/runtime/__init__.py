"""The multiprocess runtime: one reader, N flow-affine decoder workers, one light writer.

`engine.Engine` coordinates; `reader` frames and routes; `worker` decodes and encodes;
`routing` is the flow hash; `messages` what they send each other.
"""
