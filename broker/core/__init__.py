"""The broker core: topics, groups, leases, acks and redelivery as plain synchronous code.

Time comes in as an argument or an injected `Clock`; nothing here awaits, sleeps
or touches a socket. `broker.broker.Broker` is the asyncio shell around it.
"""
