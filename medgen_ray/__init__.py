"""medgen_ray: medical video generation systems on Ray."""
