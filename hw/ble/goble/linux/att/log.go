package att

import (
	"github.com/mgutz/logxi/v1"
)

var logger = log.New("att")
