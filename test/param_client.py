"""Parameter services of another node through plain service clients (Humble's rclpy API).

``rclpy.parameter_client.AsyncParameterClient`` arrived in Iron; these helpers call the
``rcl_interfaces`` services every distribution has, so the suite also runs on Humble.
"""
from __future__ import annotations

import threading

from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters


def call(node, srv_type, target, service, request, timeout=20.0):
    """Call ``<target>/<service>`` from ``node`` (spun elsewhere); return the response."""
    client = node.create_client(srv_type, f'{target}/{service}')
    try:
        assert client.wait_for_service(timeout_sec=timeout), f'no {target}/{service}'
        future = client.call_async(request)
        answered = threading.Event()
        future.add_done_callback(lambda _: answered.set())
        assert answered.wait(timeout), f'{target}/{service} did not answer within {timeout} s'
        return future.result()
    finally:
        node.destroy_client(client)


def set_parameters(node, target, parameters, timeout=20.0):
    """Set ``parameters`` (rclpy Parameter objects) on ``target``; return the results."""
    request = SetParameters.Request(parameters=[p.to_parameter_msg() for p in parameters])
    return call(node, SetParameters, target, 'set_parameters', request, timeout).results


def get_parameters(node, target, names, timeout=20.0):
    """Return the ParameterValue messages of ``names`` on ``target``."""
    request = GetParameters.Request(names=list(names))
    return call(node, GetParameters, target, 'get_parameters', request, timeout).values


def describe_parameters(node, target, names, timeout=20.0):
    """Return the ParameterDescriptor messages of ``names`` on ``target``."""
    request = DescribeParameters.Request(names=list(names))
    return call(node, DescribeParameters, target, 'describe_parameters', request,
                timeout).descriptors
