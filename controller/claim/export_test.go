package claim

// SetStep sets the hook called between the steps of Accept and Reset; a
// non-nil error from it fails the step as a failed write would.
func SetStep(b *Board, f func(step string) error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.step = f
}
