"""spoolmq broker: topics, groups, leases and redelivery (the core), the sans-IO wire
protocol, the TCP server and the native client. Imports `storage`, never the gateway.
"""
