"""The offline tools: demo, batch, sweep, the bag tool and the fleet, front ends over the pipeline.

A tool is a module with a ``main``; no tool imports another: what they share is in the modules
without one (:mod:`.common`, and :mod:`.bags`, the per-bag step of the bag tool and the fleet).
Only the bag step touches ROS messages, through the ROS glue's stereo-set step
(:mod:`foundation_stereo_ros.ros`); only the fleet imports Ray, an optional extra. Run them as
``python -m foundation_stereo_ros.demo`` (``.batch``, ``.sweep``, ``.bag_tool``, ``.fleet``).
"""
