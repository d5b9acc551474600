"""Depth providers behind one interface (`base.DepthProvider`); `factory.build_provider` picks one."""
