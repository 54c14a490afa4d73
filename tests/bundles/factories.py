from controlplane.bundles import services


def environment(name: str, *, by, position: int = 0):
    return services.create_environment(name=name, position=position, by=by)
