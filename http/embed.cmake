# Writes a C file defining `const unsigned char NAME[]` (the bytes of IN,
# NUL-terminated) and `const size_t NAME_len` (without the NUL), so static
# files are compiled into the binary. Usage:
#   cmake -DIN=file -DOUT=file.c -DNAME=symbol -P http/embed.cmake
file(READ "${IN}" _hex HEX)
string(LENGTH "${_hex}" _n)
math(EXPR _bytes "${_n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," _arr "${_hex}")
file(WRITE "${OUT}" "#include <stddef.h>\nconst unsigned char ${NAME}[] = {${_arr}0};\nconst size_t ${NAME}_len = ${_bytes};\n")
