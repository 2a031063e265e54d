package provision

// SetBeforeRename makes AddDevice call f after the registration and
// before the bundle is renamed into place; an error stands for the
// process dying there.
func SetBeforeRename(p *Provisioner, f func() error) { p.beforeRename = f }
