module registrar

go 1.26.8
