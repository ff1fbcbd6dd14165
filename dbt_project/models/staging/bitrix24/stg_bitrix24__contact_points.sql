-- One row per phone or e-mail of a Bitrix24 contact (PHONE / EMAIL multifields), normalised
-- by warehouse/contact_points.py. raw.contact_points holds every source; this keeps Bitrix24.
with

source as (

    select * from {{ source('voronka_derived', 'contact_points') }}
    where source = 'bitrix24'

),

renamed as (

    select
        account,
        cast(contact_id as bigint) as contact_id,
        kind as point_kind,
        value_raw,
        value_normalized,
        value_normalized is not null as is_valid
    from source

)

select distinct * from renamed
