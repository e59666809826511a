"""The wire: gRPC services, proto ⇄ domain conversion, mDNS discovery.

The only package that imports grpc, zeroconf or the generated protobuf code.
"""
