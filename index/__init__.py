"""The appliance index: aplinfo parse/serialize, sources, update, download, building and
verifying a signed catalog. Imports only :mod:`shared`."""
