"""Serving: what the app needs beyond its tabs - the scheduler that owns the model, model calls as ZeroGPU tasks,
the JavaScript bertviz loads, and the folder a Hugging Face Space runs.

    scheduler     owns the app's model: the room's Asks answered together, other model work in turns
    gpu           spaces.GPU on a ZeroGPU Space; the plain function anywhere else
    model_calls   the app's model calls, each a GPU task
    webassets     require.js, d3 and jQuery served by the app (works offline)
    space         assemble a Space folder for cpu, gpu or zerogpu hardware
"""
