"""The JSON Schemas kerasrepair validates archives against (installed as `kerasrepair.schemas`).

config.schema.json    the structure of config.json (any Keras 3 release)
metadata.schema.json  metadata.json
keras/X.Y.json        the keyword arguments of every built-in serializable class of
                      Keras X.Y, generated from the real release by dev/generate_schemas.py
"""
